"""Every bound the API enforces, in one place: validators, the OpenAPI document and the docs all read these."""

SEED_MIN = 0
SEED_MAX = 2**32 - 1  # numpy.random.RandomState accepts exactly 0 .. 2**32 - 1

# Output sizes offered besides the model's own resolution. Bounded so a query cannot ask for a huge image.
SIZES = (64, 128, 256, 512)
# Grids and animations hold many faces, so each face in them is capped lower than a single face.
MAX_CELL_SIZE = 256

MAX_FACES = 64  # faces per grid (`n`, or the length of `seeds`)
DEFAULT_FACES = 16

MIN_STEPS = 2  # frames in an interpolation; 2 = just the two ends
MAX_STEPS = 60
DEFAULT_STEPS = 16
FRAME_MILLISECONDS = 80

# Truncation: the latent vector is scaled by psi. 0 would be one face for every seed, above 1 leaves the
# distribution the generator was trained on, so 0 < psi <= 1 (docs/ARCHITECTURE.md).
PSI_MAX = 1.0
DEFAULT_PSI = 1.0

# A model name is a folder name under the models directory: no separators, and no leading dot, so neither
# `..` nor an export's hidden staging folder can be named.
MODEL_NAME_PATTERN = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}"

# A year, the longest lifetime RFC 9111 suggests: a face URL with a seed names an image that never changes.
IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"
