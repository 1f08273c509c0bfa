"""The baseline's gunicorn config: empty on purpose. Its settings are all on serve_load's command line (sync
workers, TLS with the benchmark's certificate); without an explicit -c, gunicorn would load the repository's own
gunicorn.conf.py from the working directory and serve the baseline with our worker class and a self-signed
certificate of its own, so the baseline never became ready."""
