"""What of a DICOM header may leave the hospital: keyed UID digests, an allow-list of facts, safe file names.

Outputs are private by default, following the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile
(NEMA, DICOM PS3.15 "Security and System Management Profiles", Table E.1-1): only what an allow-list names is
written, free text is dropped unless the user keeps a named field explicitly, and no free text reaches a file name.

* **Kept**: coded and numeric acquisition facts (modality, series number, kVp, tube current, exposure, nominal slice
  thickness, patient position), the image geometry (orientation, pixel spacing, slice positions; the profile retains
  these), rescale, transfer syntax, instance numbers.
* **Replaced**: SeriesInstanceUID, StudyInstanceUID, FrameOfReferenceUID and SOPInstanceUIDs become keyed digests
  ``HMAC-SHA256(key, uid)`` (Krawczyk, Bellare and Canetti, RFC 2104, 1997). A plain hash of a UID is no protection:
  UIDs are not secret, so anyone holding the DICOM could recompute and re-link it. With a secret key the digests
  still let ``rtstruct2nifti`` and ``lidc`` check that annotations belong to the series (they digest the
  annotation's UIDs with the same key), but cannot be re-linked without the key.
* **Dropped**: patient name, ID, birth date, sex, age, all dates and times, accession number, study ID,
  institution, station, device serial number, source file paths, and the free text of SeriesDescription,
  Manufacturer, ManufacturerModelName, ConvolutionKernel, ContrastBolusAgent and BodyPartExamined. Any of these
  free-text fields can be kept by name (:data:`KEEPABLE_TEXT`); the kept text is then scrubbed of this patient's
  name parts, IDs and birth date, of the institution, station and physician names in the header, and of anything
  that looks like a date. Text the header does not reveal as identifying (a name typed into a description) cannot be
  detected, so keeping free text stays the user's decision.

The key is a per-project secret of 32 random bytes kept outside the outputs: a key file (default
``<user config dir>/medseg/uid_key``, created with permissions 0600 on first use). Whoever holds the key file can
re-link the digests to UIDs; share the outputs, never the key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import unicodedata
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from data_tools.dicom.tags import text
from medseg.typing import PathLike

__all__ = [
    "DIGEST_SCHEME",
    "IDENTIFYING_FIELDS",
    "KEEPABLE_TEXT",
    "Privacy",
    "UidKey",
    "default_key_file",
    "load_key",
    "safe_name",
    "scrub_text",
    "uid_in",
]

logger = logging.getLogger(__name__)

#: How UID digests are made; written into sidecars so readers know what they compare with.
DIGEST_SCHEME = "hmac-sha256"
_DIGEST_PREFIX = DIGEST_SCHEME + ":"
_DIGEST_HEX = 32  # 128 bits of the HMAC: collisions are out of reach, the sidecar stays readable

#: Free-text sidecar fields that are dropped from private outputs unless kept by name, with their DICOM keywords.
KEEPABLE_TEXT: dict[str, str] = {
    "series_description": "SeriesDescription",
    "manufacturer": "Manufacturer",
    "manufacturer_model_name": "ManufacturerModelName",
    "convolution_kernel": "ConvolutionKernel",
    "contrast_bolus_agent": "ContrastBolusAgent",
    "body_part_examined": "BodyPartExamined",
}

#: Identifying sidecar fields, written only with ``keep_phi``: (field, DICOM keyword).
IDENTIFYING_FIELDS: tuple[tuple[str, str], ...] = (
    ("patient_id", "PatientID"),
    ("patient_name", "PatientName"),
    ("patient_birth_date", "PatientBirthDate"),
    ("patient_sex", "PatientSex"),
    ("patient_age", "PatientAge"),
    ("study_date", "StudyDate"),
    ("series_date", "SeriesDate"),
    ("acquisition_date", "AcquisitionDate"),
    ("accession_number", "AccessionNumber"),
    ("study_id", "StudyID"),
    ("institution_name", "InstitutionName"),
    ("station_name", "StationName"),
    ("device_serial_number", "DeviceSerialNumber"),
)

_KEY_BYTES = 32
_KEY_ID_MESSAGE = b"medseg uid key id"

# ----------------------------------------------------------------------------------------------------------------------
# The key
# ----------------------------------------------------------------------------------------------------------------------


def default_key_file() -> Path:
    """The default key file, ``<user config dir>/medseg/uid_key``.

    The config dir is ``$XDG_CONFIG_HOME`` (else ``~/.config``); ``%APPDATA%`` on Windows, ``~/Library/Application
    Support`` on macOS.
    """
    if os.name == "nt":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        xdg = os.environ.get("XDG_CONFIG_HOME", "")
        base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".config"
    return base / "medseg" / "uid_key"


@dataclasses.dataclass(frozen=True)
class UidKey:
    """The secret that keys UID digests.

    Attributes:
        secret: the key bytes (never written to outputs).
        path: the key file it came from.
    """

    secret: bytes = dataclasses.field(repr=False)
    path: Path

    @property
    def key_id(self) -> str:
        """A public fingerprint of the key (an HMAC of a fixed message): tells which key made a sidecar's digests."""
        return hmac.new(self.secret, _KEY_ID_MESSAGE, hashlib.sha256).hexdigest()[:16]

    def digest(self, uid: str) -> str:
        """``hmac-sha256:<32 hex>`` of a UID (surrounding blanks ignored).

        Example:
            >>> key = UidKey(bytes(32), Path("k"))
            >>> d = key.digest("1.2.3")
            >>> other = UidKey(b"x" * 32, Path("k2")).digest("1.2.3")
            >>> d.startswith("hmac-sha256:"), len(d), d == key.digest(" 1.2.3 "), d == other
            (True, 44, True, False)
        """
        mac = hmac.new(self.secret, uid.strip().encode("ascii", "replace"), hashlib.sha256)
        return _DIGEST_PREFIX + mac.hexdigest()[:_DIGEST_HEX]


def _read_key(path: Path) -> UidKey:
    try:
        content = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--key-file {str(path)!r}: cannot read the UID key ({err})") from err
    if not re.fullmatch(r"[0-9a-f]{64}", content):
        raise ValueError(
            f"--key-file {str(path)!r}: not a medseg UID key (expected 64 hexadecimal characters); give the key file "
            "that dicom2nifti created, or a path that does not exist yet to create a new key there"
        )
    if os.name != "nt" and path.stat().st_mode & 0o077:
        logger.warning("UID key file %s is readable by other users; restrict it with: chmod 600 %s", path, path)
    return UidKey(bytes.fromhex(content), path)


def load_key(path: PathLike | None = None, *, create: bool = False) -> UidKey:
    """Read the UID key from ``path`` (default :func:`default_key_file`), creating it when ``create`` and absent.

    A new key is 32 bytes from :mod:`secrets`, written as hex to a file created with permissions 0600 (its folder
    0700 when new); a concurrent creation by another process is detected and its key used.

    Raises:
        FileNotFoundError: the key file does not exist and ``create`` is False.
        ValueError: the file is not a key.
    """
    key_path = Path(path).expanduser() if path is not None else default_key_file()
    if key_path.is_file():
        return _read_key(key_path)
    if not create:
        raise FileNotFoundError(
            f"UID key file {str(key_path)!r} does not exist; pass --key-file with the key used by dicom2nifti for "
            "this series"
        )
    key_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(key_path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secrets.token_bytes(_KEY_BYTES).hex() + "\n")
    logger.warning(
        "created a new UID key at %s: keep it (and a backup) to check annotations against these outputs; never "
        "share it with them",
        key_path,
    )
    return _read_key(key_path)


def uid_in(uid: str | None, candidates: Iterable[str | None], key: UidKey | None = None) -> bool:
    """Whether ``uid`` equals one of ``candidates``: plain UIDs, or keyed digests when ``key`` is given.

    Example:
        >>> key = UidKey(bytes(32), Path("k"))
        >>> uid_in("1.2.3", [key.digest("1.2.3")], key), uid_in("1.2.3", ["1.2.3"]), uid_in("1.2.4", ["1.2.3"], key)
        (True, True, False)
    """
    if not uid:
        return False
    uid = uid.strip()
    accepted = {uid, key.digest(uid)} if key is not None else {uid}
    return any(c is not None and c in accepted for c in candidates)


# ----------------------------------------------------------------------------------------------------------------------
# Names and text
# ----------------------------------------------------------------------------------------------------------------------

_RESERVED_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


def safe_name(value: str, *, max_length: int = 80) -> str:
    """A file-system-safe version of ``value``: ASCII letters, digits, ``.``, ``+`` and ``-``, joined by ``_``.

    Leading dots and dashes are dropped (a name starting with ``-`` reads as an option on the command line), and
    reserved Windows device names get a leading underscore. May return an empty string.

    Example:
        >>> safe_name("CT Body 3.0 / Lung (ax)"), safe_name("-95.000000"), safe_name("Ödem re.")
        ('CT_Body_3.0_Lung_ax', '95.000000', 'Odem_re')
    """
    ascii_text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", ascii_text)
    name = re.sub(r"_+", "_", name).strip("._-+")
    name = name[:max_length].rstrip("._-+")
    if name.lower().split(".")[0] in _RESERVED_NAMES:
        name = "_" + name
    return name


#: Date-like text: 20230514, 2023-05-14, 2023/05/14, 14.05.2023, 5/14/23 (with any of . / - as separator).
_DATE_PATTERNS = (
    re.compile(r"(?<!\d)(?:19|20)\d{2}[-./]?(?:0[1-9]|1[0-2])[-./]?(?:0[1-9]|[12]\d|3[01])(?!\d)"),
    re.compile(r"(?<!\d)\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})(?!\d)"),
)


def identifying_values(ds: Any) -> list[str]:
    """Identifying strings of a header to scrub from free text, longest first.

    Patient name parts, IDs and the birth date (several spellings), and the institution, station, referring,
    performing and reading physicians' names.
    """
    values: list[str] = []
    for keyword in (
        "PatientName",
        "ReferringPhysicianName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "PhysiciansOfRecord",
    ):
        name = text(ds, keyword) or ""
        values += [part for part in re.split(r"[\^\s,=\\]+", name) if len(part) >= 2]
    for keyword in ("PatientID", "OtherPatientIDs", "IssuerOfPatientID", "AccessionNumber", "StudyID"):
        value = text(ds, keyword)
        if value:
            values += [v for v in value.split("\\") if len(v) >= 2]
    for keyword in ("InstitutionName", "InstitutionalDepartmentName", "StationName"):
        value = text(ds, keyword)
        if value:
            values.append(value)
            values += [w for w in re.split(r"[\s,.;:/\\-]+", value) if len(w) >= 4]
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    if re.fullmatch(r"\d{8}", birth):
        y, m, d = birth[:4], birth[4:6], birth[6:]
        values += [birth, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}"]
    return sorted(set(values), key=len, reverse=True)


def scrub_text(value: str, identifying: Sequence[str]) -> str:
    """``value`` without the ``identifying`` strings (case-insensitive) and without anything that looks like a date.

    Example:
        >>> scrub_text("Doe chest 2023-05-14 St Mary", ["Doe", "Mary"])
        'chest St'
    """
    for item in identifying:
        value = re.sub(re.escape(item), " ", value, flags=re.IGNORECASE)
    for pattern in _DATE_PATTERNS:
        value = pattern.sub(" ", value)
    return re.sub(r"\s+", " ", value).strip()


# ----------------------------------------------------------------------------------------------------------------------
# The policy
# ----------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Privacy:
    """What a conversion writes about the patient.

    Attributes:
        keep_phi: write identifying values, plain UIDs, source paths and free text as they are (opt-in).
        keep_text: free-text fields (names from :data:`KEEPABLE_TEXT`) kept, scrubbed, in private outputs.
        key: the UID key (required unless ``keep_phi``).
    """

    keep_phi: bool = False
    keep_text: frozenset[str] = frozenset()
    key: UidKey | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.keep_text) - set(KEEPABLE_TEXT))
        if unknown:
            raise ValueError(
                f"--keep-text: unknown field(s) {', '.join(map(repr, unknown))}; choose from {', '.join(KEEPABLE_TEXT)}"
            )
        if self.keep_phi and self.keep_text:
            raise ValueError("--keep-text has no effect with --keep-phi (all text is kept); give one of them")
        if not self.keep_phi and self.key is None:
            raise ValueError("private outputs need a UID key: pass key=load_key(..., create=True)")

    def uid(self, value: str | None) -> str | None:
        """A UID as written: plain with ``keep_phi``, else its keyed digest; None when blank."""
        if not value:
            return None
        if self.keep_phi:
            return value
        assert self.key is not None  # checked in __post_init__
        return self.key.digest(value)

    def free_text(self, ds: Any, field: str) -> str | None:
        """The free-text ``field`` of the header as written: as is with ``keep_phi``; scrubbed if kept; else None."""
        value = text(ds, KEEPABLE_TEXT[field])
        if value is None or self.keep_phi:
            return value
        if field not in self.keep_text:
            return None
        return scrub_text(value, identifying_values(ds)) or None
