"""Every image facegen writes says it is synthetic: XMP metadata, C2PA Content Credentials, an invisible watermark.

One module, one call per encoded image (:func:`encode`), used by the service's encoders (app/faces.py) and so by
everything that writes through them (the API, ``python -m facegen generate``); :func:`inspect` reads the marks back
(``python -m facegen verify``, ``POST /api/verify``).

What is marked (docs/SERVICE.md, "Provenance marks"):

- XMP, in the file's own XMP slot (PNG iTXt ``XML:com.adobe.xmp``, WebP ``XMP `` chunk, GIF "XMP Data" application
  extension, JPEG APP1): IPTC's ``Iptc4xmpExt:DigitalSourceType`` (``trainedAlgorithmicMedia`` for generated faces, grids and
  interpolations; ``compositeWithTrainedAlgorithmicMedia`` for anything made from an uploaded photo), IPTC's
  ``AISystemUsed`` / ``AISystemVersionUsed`` (the model and its version), and the seeds in facegen's own namespace.
  Deterministic: the same image and mark give the same bytes.
- C2PA Content Credentials, only when the operator configured a signing certificate (:class:`CredentialSigner`,
  environment variables below): a ``c2pa.created`` action with the same digital source type, the model, and for
  edits an ingredient that records that a photo went in (its title and format only: never its pixels or hash).
  C2PA manifests carry random salts, so two signings of one image differ in bytes: the service signs a face once
  and serves it from its cache.
- The watermark (facegen/watermark.py), in the pixels, on images at least ``watermark.MIN_SIDE`` pixels on each side.

Configuration (environment, read once by :func:`signer_from_environment`):
  FACEGEN_C2PA_CERT_FILE, FACEGEN_C2PA_KEY_FILE   PEM: the signing certificate chain (signer first) and its key
  FACEGEN_C2PA_DEV=1                              no certificate: make a development CA and signer at start
  FACEGEN_C2PA_TRUST_ANCHORS                      PEM CA certificates whose credentials ``verify`` calls trusted

Nothing here imports training/ or app/.
"""

from __future__ import annotations

import datetime
import io
import json
import logging
import os
import re
import tempfile
import threading
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, PngImagePlugin

from facegen import watermark

log = logging.getLogger(__name__)

SOFTWARE = "facegen"
IPTC_SOURCE_TYPES = "http://cv.iptc.org/newscodes/digitalsourcetype/"
GENERATED = "trainedAlgorithmicMedia"  # made by a trained model from a seed
COMPOSITE = "compositeWithTrainedAlgorithmicMedia"  # made from an uploaded photo with a trained model
SOURCE_TYPES = (GENERATED, COMPOSITE)

NS_RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
NS_IPTC_EXT = "http://iptc.org/std/Iptc4xmpExt/2008-02-29/"
NS_XMP = "http://ns.adobe.com/xap/1.0/"
NS_DC = "http://purl.org/dc/elements/1.1/"
NS_FACEGEN = "http://facegen.invalid/ns/1.0/"  # .invalid: a name, never a place to fetch
XMP_KEY = "XML:com.adobe.xmp"  # the PNG iTXt keyword XMP lives under
GIF_XMP_APPLICATION = b"XMP DataXMP"
MODEL_ASSERTION = "org.facegen.model"  # the C2PA assertion naming the model, its version and the seeds

ENV_CERT, ENV_KEY = "FACEGEN_C2PA_CERT_FILE", "FACEGEN_C2PA_KEY_FILE"
ENV_DEV, ENV_TRUST = "FACEGEN_C2PA_DEV", "FACEGEN_C2PA_TRUST_ANCHORS"
MIME = {"png": "image/png", "gif": "image/gif", "webp": "image/webp", "jpeg": "image/jpeg"}


class ProvenanceConfigError(ValueError):
    """The signing configuration is unusable (a file missing, a key that does not match its certificate...)."""


@dataclass(frozen=True)
class Mark:
    """What one image says about itself."""

    source_type: str  # GENERATED or COMPOSITE
    model: str
    model_version: str | None = None
    seeds: tuple[int, ...] = ()  # the seeds the image was drawn from; () for images made from a photo
    what: str = "face"  # face, grid, interpolation, edit: the title of the C2PA manifest
    from_photo: bool = False  # an uploaded photo was an ingredient (recorded, never embedded)

    def __post_init__(self):
        if self.source_type not in SOURCE_TYPES:
            raise ValueError(f"source_type must be one of {SOURCE_TYPES}, got {self.source_type!r}")

    @property
    def source_type_uri(self) -> str:
        return IPTC_SOURCE_TYPES + self.source_type

    def description(self) -> str:
        seeds = f" from seed{'s' if len(self.seeds) > 1 else ''} {', '.join(map(str, self.seeds))}" \
            if self.seeds else ""
        made = "edited from an uploaded photo" if self.from_photo else "generated"
        return f"Synthetic image ({self.what}) {made} by facegen model {self.model}{seeds}; not a photograph."


def generated(model: str, version: str | None, seeds: Sequence[int], what: str = "face") -> Mark:
    return Mark(GENERATED, model, version, tuple(int(s) for s in seeds), what)


def from_photo(model: str, version: str | None, what: str = "edit") -> Mark:
    return Mark(COMPOSITE, model, version, (), what, from_photo=True)


# ---------------------------------------------------------------------------------------------------------- XMP


def _escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def xmp_packet(mark: Mark) -> str:
    """The XMP packet for a mark: plain ASCII, no NUL bytes (GIF's XMP extension needs that), no timestamps."""
    attributes = {"Iptc4xmpExt:DigitalSourceType": mark.source_type_uri,
                  "Iptc4xmpExt:AISystemUsed": f"{SOFTWARE} model {mark.model}",
                  "xmp:CreatorTool": SOFTWARE,
                  "facegen:Model": mark.model,
                  "facegen:Kind": mark.what}
    if mark.model_version:
        attributes["Iptc4xmpExt:AISystemVersionUsed"] = mark.model_version
        attributes["facegen:ModelVersion"] = mark.model_version
    if mark.seeds:
        attributes["facegen:Seeds"] = ",".join(map(str, mark.seeds))
    if mark.from_photo:
        attributes["facegen:Ingredient"] = "an uploaded photo (not kept)"
    lines = "".join(f'\n    {name}="{_escape(value)}"' for name, value in attributes.items())
    return ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">\n'
            f' <rdf:RDF xmlns:rdf="{NS_RDF}">\n'
            f'  <rdf:Description rdf:about="" xmlns:Iptc4xmpExt="{NS_IPTC_EXT}" xmlns:xmp="{NS_XMP}"\n'
            f'    xmlns:dc="{NS_DC}" xmlns:facegen="{NS_FACEGEN}"{lines}>\n'
            f'   <dc:description><rdf:Alt><rdf:li xml:lang="x-default">{_escape(mark.description())}</rdf:li>'
            '</rdf:Alt></dc:description>\n'
            '  </rdf:Description>\n'
            ' </rdf:RDF>\n'
            '</x:xmpmeta>\n'
            '<?xpacket end="r"?>')


def _gif_with_xmp(data: bytes, packet: str) -> bytes:
    """Insert XMP's GIF application extension after the header, screen descriptor and global colour table.

    The packet bytes are followed by XMP's "magic trailer" (0x01, 0xFF down to 0x00, then the block terminator), so
    GIF readers that know nothing of XMP walk over the packet as if it were sub-blocks.
    """
    flags = data[10]
    start = 13 + (3 * 2 ** ((flags & 0x07) + 1) if flags & 0x80 else 0)
    trailer = bytes([0x01]) + bytes(range(0xFF, -1, -1)) + b"\x00"
    extension = b"\x21\xff\x0b" + GIF_XMP_APPLICATION + packet.encode("ascii") + trailer
    return data[:start] + extension + data[start:]


def _xmp_bytes(data: bytes) -> bytes | None:
    """The raw XMP packet of an encoded image, wherever its format keeps it (found by its markers)."""
    start = data.find(b"<x:xmpmeta")
    if start < 0:
        return None
    end = data.find(b"</x:xmpmeta>", start)
    return data[start:end + len(b"</x:xmpmeta>")] if end >= 0 else None


def read_xmp(data: bytes) -> dict:
    """The provenance fields of an image's XMP (any format: PNG, GIF, WebP, JPEG...), or {} when there is none.

    Refuses packets with a DOCTYPE (entity tricks) before parsing: this runs on uploads.
    """
    packet = _xmp_bytes(data)
    if packet is None or b"<!DOCTYPE" in packet.upper() or b"<!ENTITY" in packet.upper():
        return {}
    try:
        root = ElementTree.fromstring(packet)
    except ElementTree.ParseError:
        return {"error": "XMP packet present but not well-formed"}
    found: dict = {}
    names = {f"{{{NS_IPTC_EXT}}}DigitalSourceType": "digital_source_type",
             f"{{{NS_IPTC_EXT}}}AISystemUsed": "ai_system", f"{{{NS_IPTC_EXT}}}AISystemVersionUsed": "ai_system_version",
             f"{{{NS_XMP}}}CreatorTool": "creator_tool", f"{{{NS_FACEGEN}}}Model": "model",
             f"{{{NS_FACEGEN}}}ModelVersion": "model_version", f"{{{NS_FACEGEN}}}Seeds": "seeds",
             f"{{{NS_FACEGEN}}}Kind": "kind", f"{{{NS_FACEGEN}}}Ingredient": "ingredient"}
    for element in root.iter():
        for key, value in element.attrib.items():
            if key in names:
                found[names[key]] = value
        tag = names.get(element.tag)
        if tag and element.text and element.text.strip():
            found[tag] = element.text.strip()
        if element.tag == f"{{{NS_DC}}}description":
            texts = [li.text for li in element.iter(f"{{{NS_RDF}}}li") if li.text]
            if texts:
                found["description"] = texts[0]
    if "seeds" in found:
        found["seeds"] = [int(s) for s in re.findall(r"-?\d+", found["seeds"])]
    source = found.get("digital_source_type", "")
    found["synthetic"] = source.startswith(IPTC_SOURCE_TYPES) and source[len(IPTC_SOURCE_TYPES):] in SOURCE_TYPES
    return found


# ------------------------------------------------------------------------------------------------------- C2PA


def _c2pa():
    import c2pa  # imported on first use: the service starts without it unless signing is configured

    return c2pa


def _algorithm(key) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return "ed25519"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        bits = {"secp256r1": "es256", "secp384r1": "es384", "secp521r1": "es512"}.get(key.curve.name)
        if bits:
            return bits
    if isinstance(key, rsa.RSAPrivateKey):
        return "ps256"
    raise ProvenanceConfigError(f"unsupported C2PA signing key type {type(key).__name__}: use Ed25519, ECDSA "
                                "P-256/P-384/P-521 or RSA")


class CredentialSigner:
    """Signs encoded images with C2PA Content Credentials. Thread-safe; one per process."""

    def __init__(self, chain_pem: bytes, key_pem: bytes, origin: str):
        from cryptography import x509
        from cryptography.hazmat.primitives import serialization

        c2pa = _c2pa()
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            certificates = x509.load_pem_x509_certificates(chain_pem)
        except (ValueError, TypeError) as error:
            raise ProvenanceConfigError(f"C2PA signing credentials from {origin}: {error}") from None
        public = certificates[0].public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        if public != key.public_key().public_bytes(serialization.Encoding.DER,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo):
            raise ProvenanceConfigError(f"C2PA signing credentials from {origin}: the key does not belong to the "
                                        "first certificate of the chain")
        pkcs8 = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
        self.algorithm = _algorithm(key)
        self.origin = origin
        self.subject = certificates[0].subject.rfc4514_string()
        try:
            self._signer = c2pa.Signer.from_info(
                c2pa.C2paSignerInfo(self.algorithm.encode(), chain_pem, pkcs8, None))
        except c2pa.C2paError as error:
            raise ProvenanceConfigError(f"C2PA signing credentials from {origin}: {error}") from None
        # No thumbnail (the image is its own), no read-back after each signature (tests validate instead).
        self._context = c2pa.Context.from_dict({"builder": {"thumbnail": {"enabled": False}},
                                                "verify": {"verify_after_sign": False}})
        self._lock = threading.Lock()

    def manifest(self, mark: Mark, fmt: str) -> dict:
        action = {"action": "c2pa.created", "digitalSourceType": mark.source_type_uri,
                  "softwareAgent": {"name": SOFTWARE}}
        assertion = {"model": mark.model, "kind": mark.what}
        if mark.model_version:
            assertion["version"] = mark.model_version
        if mark.seeds:
            assertion["seeds"] = ",".join(map(str, mark.seeds))
        definition = {"claim_generator_info": [{"name": SOFTWARE}], "title": f"{mark.what} ({mark.model})",
                      "format": MIME[fmt],
                      "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}},
                                     {"label": MODEL_ASSERTION, "data": assertion}]}
        if mark.from_photo:
            # That a photo went in, and nothing of it: no hash, no thumbnail, no pixels.
            definition["ingredients"] = [{"title": "uploaded photo (not kept)", "format": "image/jpeg",
                                          "relationship": "inputTo"}]
        return definition

    def sign(self, data: bytes, fmt: str, mark: Mark) -> bytes:
        c2pa = _c2pa()
        definition = json.dumps(self.manifest(mark, fmt))
        signed = io.BytesIO()
        with self._lock:  # the signer and the context are shared by the worker's threads
            builder = c2pa.Builder(definition, self._context)
            builder.sign(self._signer, MIME[fmt], io.BytesIO(data), signed)
        return signed.getvalue()


def development_credentials(directory: Path | None = None) -> tuple[bytes, bytes, bytes]:
    """(chain PEM, key PEM, CA PEM): a development CA and an Ed25519 signer it issued, valid for a year.

    C2PA refuses a self-signed end-entity certificate, so the "self-signed" default is a two-link chain whose root
    nobody trusts unless told to (FACEGEN_C2PA_TRUST_ANCHORS). Written to ``directory`` when given.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common):
        return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "facegen development (untrusted)"),
                          x509.NameAttribute(NameOID.COMMON_NAME, common)])

    now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
    later = now + datetime.timedelta(days=365)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("facegen development CA")).issuer_name(
        name("facegen development CA")).public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256()))
    key = ed25519.Ed25519PrivateKey.generate()
    leaf = (x509.CertificateBuilder().subject_name(name("facegen development signer")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(later)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    ca_pem = ca.public_bytes(pem)
    chain = leaf.public_bytes(pem) + ca_pem
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    if directory is not None:
        directory = Path(directory)
        (directory / "c2pa-dev-chain.pem").write_bytes(chain)
        (directory / "c2pa-dev-ca.pem").write_bytes(ca_pem)
        key_file = directory / "c2pa-dev-key.pem"
        key_file.write_bytes(key_pem)
        key_file.chmod(0o600)
    return chain, key_pem, ca_pem


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def signer_from_environment(environ=None) -> CredentialSigner | None:
    """The operator's signer (FACEGEN_C2PA_CERT_FILE + FACEGEN_C2PA_KEY_FILE), a development one when
    FACEGEN_C2PA_DEV is set and no certificate is, else None: no Content Credentials.

    Raises ProvenanceConfigError when only one of the two files is named, or they are unusable.
    """
    environ = os.environ if environ is None else environ
    cert, key = environ.get(ENV_CERT), environ.get(ENV_KEY)
    if cert or key:
        if not (cert and key):
            missing = ENV_KEY if cert else ENV_CERT
            raise ProvenanceConfigError(f"{ENV_CERT} and {ENV_KEY} go together: {missing} is not set")
        try:
            chain_pem, key_pem = Path(cert).read_bytes(), Path(key).read_bytes()
        except OSError as error:
            raise ProvenanceConfigError(f"C2PA signing credentials: cannot read {error.filename}: "
                                        f"{error.strerror}") from None
        return CredentialSigner(chain_pem, key_pem, f"{ENV_CERT}={cert}")
    if _truthy(environ.get(ENV_DEV)):
        directory = Path(tempfile.mkdtemp(prefix="facegen-c2pa-"))
        chain_pem, key_pem, _ = development_credentials(directory)
        log.warning("C2PA: signing with a development certificate (%s asked for it); its CA, which no verifier "
                    "trusts unless told to, is %s", ENV_DEV, directory / "c2pa-dev-ca.pem")
        return CredentialSigner(chain_pem, key_pem, f"{ENV_DEV} (development CA in {directory})")
    return None


_SIGNER_UNSET = object()
_signer = _SIGNER_UNSET
_signer_lock = threading.Lock()


def configured_signer() -> CredentialSigner | None:
    """The process's signer, read from the environment once (app.create_app calls this at start, so a bad
    configuration stops the service before it answers)."""
    global _signer
    with _signer_lock:
        if _signer is _SIGNER_UNSET:
            _signer = signer_from_environment()
        return _signer


def use_signer(signer: CredentialSigner | None) -> None:
    """Set (or clear, with None) the process's signer; tests and tools that configure signing in code."""
    global _signer
    with _signer_lock:
        _signer = signer


def read_credentials(data: bytes, fmt: str, trust_anchors: bytes | None = None) -> dict:
    """What C2PA says about an image: present or not; whether the signature and hashes verify (``valid``); whether
    the signer chains to a trusted CA (``trusted``); the digital source type, model and ingredients recorded."""
    if fmt not in MIME:
        return {"present": False, "note": f"C2PA is not read from {fmt} files here"}
    c2pa = _c2pa()
    settings = {"trust": {"trust_anchors": trust_anchors.decode("ascii")}} if trust_anchors else {}
    try:
        context = c2pa.Context.from_dict(settings)
        reader = c2pa.Reader(MIME[fmt], io.BytesIO(data), context=context)
        store = json.loads(reader.json())
        state = reader.get_validation_state()
    except c2pa.C2paError as error:
        text = str(error)
        if "ManifestNotFound" in type(error).__name__ or "no JUMBF" in text or "not found" in text.lower():
            return {"present": False}
        return {"present": True, "valid": False, "trusted": False, "error": text.splitlines()[0][:300]}
    manifest = store.get("manifests", {}).get(store.get("active_manifest"), {})
    results = (store.get("validation_results") or {}).get("activeManifest") or {}
    failures = [status["code"] for status in results.get("failure", [])]
    untrusted = "signingCredential.untrusted" in failures
    problems = [code for code in failures if code != "signingCredential.untrusted"]
    actions = [action for assertion in manifest.get("assertions", []) if assertion["label"].startswith("c2pa.actions")
               for action in assertion["data"].get("actions", [])]
    model = next((assertion["data"] for assertion in manifest.get("assertions", [])
                  if assertion["label"] == MODEL_ASSERTION), None)
    source_types = [action["digitalSourceType"] for action in actions if "digitalSourceType" in action]
    signature = manifest.get("signature_info", {})
    return {"present": True, "valid": not problems and state in ("Valid", "Trusted"),
            "trusted": state == "Trusted" and not untrusted, "validation_state": state, "failures": failures,
            "signer": {"issuer": signature.get("issuer"), "common_name": signature.get("common_name"),
                       "algorithm": signature.get("alg")},
            "digital_source_type": source_types[0] if source_types else None,
            "model": model,
            "ingredients": [{"title": i.get("title"), "relationship": i.get("relationship")}
                            for i in manifest.get("ingredients", [])]}


# ------------------------------------------------------------------------------------------- encode and inspect


def mark_pixels(image: Image.Image) -> Image.Image:
    """The watermark, on RGB images large enough for it (facegen/watermark.py); others come back as they were."""
    if image.mode != "RGB" or not watermark.large_enough(*image.size):
        return image
    return Image.fromarray(watermark.embed(np.asarray(image)), "RGB")


def encode(frames: Image.Image | Sequence[Image.Image], fmt: str, mark: Mark, save_options: dict | None = None,
           signer: CredentialSigner | None | object = _SIGNER_UNSET) -> bytes:
    """Pixels -> marked file bytes: watermark (large enough images), the format's encoder with XMP, then the C2PA
    manifest when a signer is configured. ``frames``: one image, or an animation's frames (gif, webp).

    ``save_options`` are Pillow's, fixed by the caller so that the bytes are deterministic; ``signer`` defaults to
    the process's (:func:`configured_signer`).
    """
    frames = [frames] if isinstance(frames, Image.Image) else list(frames)
    frames = [mark_pixels(frame) for frame in frames]
    packet = xmp_packet(mark)
    options = dict(save_options or {})
    if len(frames) > 1:
        options.update(save_all=True, append_images=frames[1:])
    buffer = io.BytesIO()
    if fmt == "png":
        info = PngImagePlugin.PngInfo()
        info.add_itxt(XMP_KEY, packet)
        frames[0].save(buffer, format="PNG", pnginfo=info, **options)
        data = buffer.getvalue()
    elif fmt == "webp":
        frames[0].save(buffer, format="WEBP", xmp=packet.encode("ascii"), **options)
        data = buffer.getvalue()
    elif fmt == "gif":
        frames[0].save(buffer, format="GIF", **options)
        data = _gif_with_xmp(buffer.getvalue(), packet)
    elif fmt == "jpeg":
        frames[0].save(buffer, format="JPEG", xmp=packet.encode("ascii"), **options)
        data = buffer.getvalue()
    else:
        raise ValueError(f"unknown image format {fmt!r}")
    signer = configured_signer() if signer is _SIGNER_UNSET else signer
    return signer.sign(data, fmt, mark) if signer is not None else data


def sniff_format(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    return None


def verify(data: bytes, image: Image.Image | None = None, trust_anchors: bytes | None = None) -> dict:
    """Every mark an encoded image carries, as JSON-ready values: ``metadata`` (XMP), ``credentials`` (C2PA) and
    ``watermark``, and ``synthetic``: whether any of them says the image is facegen's.

    ``image``: the decoded first frame when the caller has it (uploads are decoded with limits elsewhere);
    ``trust_anchors`` defaults to the PEM file named by FACEGEN_C2PA_TRUST_ANCHORS.
    """
    fmt = sniff_format(data)
    anchors_note = None
    if trust_anchors is None and os.environ.get(ENV_TRUST):
        try:
            trust_anchors = Path(os.environ[ENV_TRUST]).read_bytes()
        except OSError as error:
            anchors_note = f"{ENV_TRUST}: {error.strerror}; no signer can be trusted"
            log.warning("%s", anchors_note)
    metadata = read_xmp(data)
    credentials = read_credentials(data, fmt, trust_anchors) if fmt else {"present": False}
    if anchors_note:
        credentials["note"] = anchors_note
    if image is None:
        image = Image.open(io.BytesIO(data))
        image.seek(0)
    detection = watermark.detect(image.convert("RGB"))
    result = {"format": fmt, "width": image.width, "height": image.height,
              "metadata": {"present": bool(metadata), **metadata},
              "credentials": credentials,
              "watermark": {**detection.as_dict(),
                            "note": None if detection.detected or watermark.large_enough(image.width, image.height)
                            else f"images under {watermark.MIN_SIDE} px a side are not watermarked: only metadata "
                                 "marks them"}}
    result["synthetic"] = bool(metadata.get("synthetic")) or bool(
        credentials.get("valid") and credentials.get("digital_source_type", "") and
        credentials["digital_source_type"].startswith(IPTC_SOURCE_TYPES)) or detection.detected
    return result
