"""Documents of a live v2 CouchDB (database ``cozy``) → v3: pure functions, no I/O (table-tested).

The live database keeps what a cozy-monitor export loses (../shared/reference/cozy-v2-export.md
§1.4-§1.7, §5.2): file and folder dates and tags, the v2 ids, the contacts' own fields and their
picture, album titles and descriptions. The v3 side (files reference §1.2-§1.3, §2; export
reference §3):

- dates: ``creationDate`` → ``CreatedAt``, ``lastModification`` → ``UpdatedAt`` (RFC 3339). v2 set
  ``creationDate`` to the upload time and ``lastModification`` to the client's date, often earlier;
  cozy-stack raises an ``updated_at`` older than ``created_at`` to it, which would lose the file's
  own date: ``created_at`` is therefore the earlier of the two (our choice, the reference is silent);
- tags → ``Tags`` (comma separated, so a tag holding a comma cannot be sent: it is dropped and
  reported);
- paths: ``files/`` + v2 ``path`` + ``/`` + ``name`` checked by the tarball's own rules
  (``tarball.split_name``), plus the name alone (no ``/``, not ``.`` or ``..``, not empty);
- contacts: the v2 ``contact`` fields (``n``, ``fn``, ``bday``, ``org``, ``title``, ``note``,
  ``datapoints`` with their ``type`` and ``pref``, ``tags``) to the io.cozy.contacts fields the
  tarball path writes (``convert``), every field with no v3 home listed (reported);
- photos: ``title`` or ``<_id>.jpg`` in the localised "Uploaded from Cozy Photos" folder;
- other doctypes: the raw document as compact JSON, as cozy-monitor writes it.
"""

from __future__ import annotations

import datetime
import email.utils
import json
import mimetypes
import re
from dataclasses import dataclass

from cozyops.v2 import convert
from cozyops.v2.tarball import split_name

PHOTO_DIRS = {"en": "Uploaded from Cozy Photos", "fr": "Transférées depuis Cozy Photos"}  # reference §1.5
CONVERTED_TYPES = ("file", "folder", "binary", "contact", "album", "photo")  # not kept as Archive JSON (§1.7)
CONTACT_INTERNAL = {"_id", "_rev", "docType", "_attachments", "revision", "carddavuri", "id"}
CONTACT_FIELDS = {"n", "fn", "bday", "note", "org", "title", "datapoints", "tags"}


def doctype(doc: dict) -> str:
    """The lowercased ``docType`` (v2 wrote both ``File`` and ``file``), or "" (design docs, ...)."""
    value = doc.get("docType")
    return value.lower() if isinstance(value, str) else ""


# -- dates and tags -------------------------------------------------------------------------

_JS_DATE = re.compile(r"^\w{3} (\w{3} \d{1,2} \d{4} \d{2}:\d{2}:\d{2}) GMT([+-]\d{4})")


def parse_v2_date(value: object) -> datetime.datetime | None:
    """A v2 date: ISO 8601 (what cozydb stores), RFC 2822, or JavaScript's ``Date.toString()``."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    moment = None
    try:
        moment = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        match = _JS_DATE.match(text)
        try:
            if match:
                moment = datetime.datetime.strptime(f"{match[1]} {match[2]}", "%b %d %Y %H:%M:%S %z")
            else:
                moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.astimezone(datetime.UTC)


def rfc3339(moment: datetime.datetime) -> str:
    text = moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def dates(created: object, updated: object) -> dict[str, str]:
    """``created_at``/``updated_at`` for an upload or a mkdir; the earlier date is the creation."""
    first, last = parse_v2_date(created), parse_v2_date(updated)
    if first and last and last < first:
        first = last
    out = {}
    if first or last:
        out["created_at"] = rfc3339(first or last)  # type: ignore[arg-type]
    if last or first:
        out["updated_at"] = rfc3339(last or first)  # type: ignore[arg-type]
    return out


def tags(value: object) -> tuple[list[str], list[str]]:
    """The tags v3 can take through ``Tags`` (kept order, no duplicates), and those it cannot."""
    kept: list[str] = []
    dropped: list[str] = []
    for tag in value if isinstance(value, list) else []:
        if not isinstance(tag, str) or not tag.strip():
            continue
        tag = tag.strip()
        if "," in tag:
            dropped.append(tag)
        elif tag not in kept:
            kept.append(tag)
    return kept, dropped


@dataclass(frozen=True)
class Entry:
    """A File or Folder of the live database, ready for the importer."""

    v2_id: str
    parts: tuple[str, ...]  # "files" first, as a tarball member's
    options: dict  # created_at, updated_at, tags: for the upload or the mkdir
    notes: tuple[str, ...] = ()  # what could not be carried over (reported)

    @property
    def path(self) -> str:
        return "/".join(self.parts)


def entry(doc: dict) -> Entry | str:
    """A File/Folder doc's path, dates and tags, or why it cannot be imported."""
    name, path = doc.get("name"), doc.get("path", "")
    if not isinstance(name, str) or not name:
        return "no name"
    if path is None:
        path = ""
    if not isinstance(path, str):
        return "path is not a string"
    if "/" in name:
        return "name holds a /"
    if name in (".", ".."):
        return "name leaves the destination (..)" if name == ".." else "name is ."
    parts, why = split_name(f"files/{path}/{name}")
    if why:
        return why
    kept, dropped = tags(doc.get("tags"))
    options: dict = dates(doc.get("creationDate"), doc.get("lastModification"))
    if kept:
        options["tags"] = kept
    notes = tuple(f"tag {tag!r} holds a comma (v3 Tags are comma separated): not kept" for tag in dropped)
    return Entry(str(doc.get("_id", "")), parts, options, notes)


# -- contents -------------------------------------------------------------------------------


def content_sources(doc: dict, kind: str) -> list[tuple[str, str]]:
    """Where a File's or Photo's content may be, in order: (document id, attachment name) pairs.

    Files: Binary ``binary.file`` (attachment ``file``, then ``raw``); photos: ``binary.raw``, then
    ``binary.file``, each Binary's ``raw`` then ``file`` (reference §1.5); then the legacy
    ``_attachments`` of the document itself (§1.4, §5.2: content cozy-monitor never exported).
    """
    binary = doc.get("binary") if isinstance(doc.get("binary"), dict) else {}
    slots = ("raw", "file") if kind == "photo" else ("file",)
    out: list[tuple[str, str]] = []
    for slot in slots:
        ref = binary.get(slot)
        if isinstance(ref, dict) and isinstance(ref.get("id"), str) and ref["id"]:
            for name in ("raw", "file") if kind == "photo" else ("file", "raw"):
                if (ref["id"], name) not in out:
                    out.append((ref["id"], name))
    attachments = doc.get("_attachments") if isinstance(doc.get("_attachments"), dict) else {}
    for name in ("raw", "file") if kind == "photo" else ("file", "raw"):
        if name in attachments:
            out.append((str(doc["_id"]), name))
    return out


def photo_folder(locale: str) -> str:
    return PHOTO_DIRS["fr" if str(locale).lower().startswith("fr") else "en"]


def photo_parts(doc: dict, locale: str) -> tuple[str, ...] | str:
    title = doc.get("title")
    name = title if isinstance(title, str) and title else f"{doc.get('_id')}.jpg"
    if "/" in name or name in (".", ".."):
        return "photo title is not a valid name"
    parts, why = split_name(f"files/Photos/{photo_folder(locale)}/{name}")
    return why or parts


def photo_options(doc: dict) -> dict:
    return dates(doc.get("date"), doc.get("date"))


def album(doc: dict) -> convert.Album | str:
    title = doc.get("title")
    if title is not None and not isinstance(title, str):
        return "album title is not a string"
    return convert.Album(str(doc["_id"]), title or str(doc["_id"]))


def album_doc(doc: dict) -> dict:
    """The v3 album: its ``name``, and the v2 description when there is one (a v3 doc takes any field)."""
    out = {"name": album(doc).name}  # type: ignore[union-attr]
    if isinstance(doc.get("description"), str) and doc["description"]:
        out["description"] = doc["description"]
    return out


def archive_json(doc: dict) -> bytes:
    """The raw document, as cozy-monitor's ``JSON.stringify(doc)`` writes it under ``Archive/``."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def archive_parts(doc: dict) -> tuple[str, ...] | str:
    parts, why = split_name(f"files/Archive/{doctype(doc)}/{doc.get('_id', '')}")
    if why or len(parts) != 4:
        return why or "document id is not a valid file name"
    return parts


def archive_attachments(doc: dict) -> list[tuple[str, list[tuple[str, str]]]]:
    """The contents an archived document owns (reference §1.7, §4: cozy-monitor lost them, e.g. mail
    attachments): its ``binary.<name>`` Binary docs and its own ``_attachments``, each as (file name
    ``<_id>.<name>``, sources). Names that are not valid file names are left out (the JSON keeps them)."""
    doc_id = str(doc.get("_id", ""))
    out: list[tuple[str, list[tuple[str, str]]]] = []
    binary = doc.get("binary") if isinstance(doc.get("binary"), dict) else {}
    for name, ref in binary.items():
        if isinstance(ref, dict) and isinstance(ref.get("id"), str) and ref["id"]:
            out.append((f"{doc_id}.{name}", [(ref["id"], name)]))
    attachments = doc.get("_attachments") if isinstance(doc.get("_attachments"), dict) else {}
    for name in attachments:
        out.append((f"{doc_id}.{name}", [(doc_id, name)]))
    return [(file, sources) for file, sources in out if not split_name(f"files/{file}")[1] and "/" not in file]


# -- contacts -------------------------------------------------------------------------------


def _name(n: str) -> dict:
    fields = (n.split(";") + [""] * 5)[:5]
    keys = ("familyName", "givenName", "additionalName", "namePrefix", "nameSuffix")
    return {key: value.strip() for key, value in zip(keys, fields, strict=True) if value.strip()}


def _address(value: object) -> dict | None:
    if isinstance(value, str):
        value = ["", "", value, "", "", "", ""]
    if not isinstance(value, list) or not all(isinstance(v, str | type(None)) for v in value):
        return None
    box, ext, street, city, region, code, country = ([v or "" for v in value] + [""] * 7)[:7]
    entry = {"pobox": box, "street": street, "city": city, "region": region, "code": code, "postcode": code,
             "country": country}
    entry = {key: v for key, v in entry.items() if v}
    if ext:
        entry["extendedAddress"] = {"locality": ext}
    entry["formattedAddress"] = ", ".join(v for v in (box, ext, street, city, region, code, country) if v)
    return entry


def contact(doc: dict) -> convert.Contact | str:
    """A v2 ``contact`` doc as an io.cozy.contacts doc (the fields of ``convert.contacts_from_vcf``),
    or why it cannot be one (a garbage document: skipped and reported)."""
    for key in ("n", "fn", "bday", "note", "org", "title"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            return f"field {key} is not a string"
    datapoints = doc.get("datapoints") or []
    if not isinstance(datapoints, list):
        return "datapoints is not a list"
    out: dict = {}
    dropped: list[str] = []
    name = _name(doc.get("n") or "")
    if name:
        out["name"] = name
    fullname = (doc.get("fn") or "").strip() or " ".join(
        name[k] for k in ("namePrefix", "givenName", "additionalName", "familyName", "nameSuffix") if k in name)
    if fullname:
        out["fullname"] = out["displayName"] = fullname
    for key, field in (("birthday", "bday"), ("note", "note"), ("company", "org"), ("jobTitle", "title")):
        if doc.get(field):
            out[key] = doc[field]
    lists: dict[str, list] = {"email": [], "phone": [], "address": [], "impp": []}
    for number, point in enumerate(datapoints, 1):
        if not isinstance(point, dict) or not isinstance(point.get("name"), str):
            dropped.append(f"datapoint {number}: not a datapoint")
            continue
        kind, value = point["name"].lower(), point.get("value")
        raw_type = point.get("type") if isinstance(point.get("type"), str) else ""
        types = [t.strip().lower() for t in raw_type.split(",") if t.strip()]
        fields = convert.datapoint_fields(types, bool(point.get("pref")) or "pref" in types)
        if kind == "adr":
            address = _address(value)
            if address is None:
                dropped.append(f"datapoint {number} (adr): not an address")
            else:
                lists["address"].append({**address, **fields})
            continue
        if not isinstance(value, str) or not value:
            dropped.append(f"datapoint {number} ({kind}): no value")
        elif kind == "email":
            lists["email"].append({"address": value, **fields})
        elif kind == "tel":
            lists["phone"].append({"number": value, **fields})
        elif kind == "chat":
            protocol = raw_type or (value.split(":", 1)[0] if ":" in value else "")
            uri = value if ":" in value or not protocol else f"{protocol}:{value}"
            lists["impp"].append({"uri": uri, "protocol": protocol})
        else:
            dropped.append(f"{kind.upper()}{';' + raw_type if raw_type else ''}:{value[:60]}")
    for key, values in lists.items():
        if values:
            out[key] = values
    groups, _ = tags(doc.get("tags"))
    for key, value in doc.items():
        if key not in CONTACT_INTERNAL and key not in CONTACT_FIELDS and value not in (None, "", [], {}):
            dropped.append(f"{key}:{json.dumps(value, ensure_ascii=False)[:60]}")
    if not out:
        return "no name and no datapoint: not a contact"
    out["metadata"] = {"version": 1, "cozy": True}
    return convert.Contact(out, groups, dropped)


def picture(doc: dict) -> tuple[str, str] | None:
    """The contact's picture attachment (reference §1.6): (attachment name, content type), or None."""
    attachments = doc.get("_attachments")
    if isinstance(attachments, dict) and isinstance(attachments.get("picture"), dict):
        return "picture", str(attachments["picture"].get("content_type") or "image/jpeg")
    return None


def picture_name(contact_doc: dict, v2_id: str, content_type: str) -> str:
    """The picture's file name in ``Contacts/``: the contact's name (made a valid v3 name) and the
    extension of its type; the v2 id when it has no name."""
    base = contact_doc.get("fullname") or v2_id
    clean = "".join("_" if c in "/\x00\r\n" else c for c in base).strip() or v2_id
    if clean in (".", ".."):
        clean = v2_id
    ext = {"image/jpeg": ".jpg", "image/png": ".png"}.get(content_type.split(";")[0].strip().lower())
    ext = ext or mimetypes.guess_extension(content_type.split(";")[0].strip()) or ".jpg"
    return clean + ext
