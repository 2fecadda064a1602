"""Webapps of an instance (cozy-stack.md §1.11, §1.2 step 6, §4.1).

cozy-stack installs apps from its registries over the network; the double has no network, so its
"registry" is the catalogue below: ``registry://<slug>/<channel>`` for a known slug installs that
version (an ``io.cozy.apps`` document, state ``ready``, and a small page under
``.cozy_apps/<slug>/<version>/`` in the instance's directory). Any other source fails.
"""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from .couch import Couch, db_name
from .instances import StackError

APPS = "io.cozy.apps"
KONNECTORS = "io.cozy.konnectors"
# The konnectors the double's registry knows (registry://<slug>[/<channel>]).
KONNECTOR_CATALOGUE = {
    slug: {"stable": "1.0.0", "beta": "1.1.0-beta.1", "dev": "1.1.0-dev.1"}
    for slug in ("trainline", "ameli", "impots", "orangemobile", "edf", "sncf", "free", "bouyguestelecom")
}
# §4.1: the webapps every instance may have.
CATALOGUE = {
    slug: {"stable": "1.0.0", "beta": "1.1.0-beta.1", "dev": "1.1.0-dev.1"}
    for slug in ("home", "settings", "store", "drive", "photos", "contacts", "notes", "passwords", "banks",
                 "mespapiers", "mail", "calendar", "coachco2", "dataproxy", "onboarding")
}
_SOURCE = re.compile(r"^registry://([a-z0-9-]+)(?:/(stable|beta|dev))?/?$")


def resolve(slug: str, source: str | None, doctype: str = APPS) -> tuple[str, str]:
    """(source, version) of an installable app or konnector; StackError 404 otherwise."""
    catalogue = CATALOGUE if doctype == APPS else KONNECTOR_CATALOGUE
    source = source or f"registry://{slug}/stable"
    match = _SOURCE.match(source)
    if not match or match.group(1) != slug or slug not in catalogue:
        raise StackError(404, "Not Found", "Application not found")
    return source, catalogue[slug][match.group(2) or "stable"]


def _version_key(version: str) -> tuple:
    main, _, pre = version.partition("-")
    return tuple(int(x) for x in main.split(".")), pre == "", pre


def page(domain: str, slug: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\">"
        f"<title>{html.escape(slug)}</title></head>\n"
        f"<body data-cozy-domain=\"{html.escape(domain)}\" data-cozy-app-slug=\"{html.escape(slug)}\">"
        f"<h1>{html.escape(slug)}</h1><p>{html.escape(slug)} of {html.escape(domain)} (cozy-stack double)</p>"
        "</body>\n</html>\n"
    )


class Apps:
    """The webapps (``io.cozy.apps``, files in ``.cozy_apps``) or konnectors (``io.cozy.konnectors``,
    ``.cozy_konnectors``) of an instance (cozy-stack's ``model/app``)."""

    def __init__(self, couch: Couch, fs_root: Path, inst: dict, doctype: str = APPS) -> None:
        self.couch = couch
        self.inst = inst
        self.doctype = doctype
        self.db = db_name(inst["prefix"], doctype)
        self.dir = fs_root / inst["domain"] / (".cozy_apps" if doctype == APPS else ".cozy_konnectors")

    def list(self) -> list[dict]:
        return [d for d in self.couch.all_docs(self.db) if not d["_id"].startswith("_design/")]

    def get(self, slug: str) -> dict | None:
        return self.couch.get(self.db, f"{self.doctype}/{slug}")

    def _files(self, slug: str, version: str) -> None:
        target = self.dir / slug / version
        target.mkdir(parents=True, exist_ok=True)
        (target / "index.html").write_text(page(self.inst["domain"], slug))
        manifest = {"name": slug, "slug": slug, "version": version, "permissions": {}}
        name = "manifest.webapp" if self.doctype == APPS else "manifest.konnector"
        (target / name).write_text(json.dumps(manifest) + "\n")

    def install(self, slug: str, source: str | None) -> dict:
        if self.get(slug) is not None:
            raise StackError(409, "Conflict", "Application with same slug already exists")  # app.ErrAlreadyExists
        source, version = resolve(slug, source, self.doctype)
        self._files(slug, version)
        doc = {"_id": f"{self.doctype}/{slug}", "name": slug, "slug": slug, "source": source, "state": "ready",
               "version": version, "permissions": {}}
        if self.doctype == KONNECTORS:
            doc["type"] = "konnector"
        self.couch.create_db(self.db)
        return self.couch.put(self.db, doc)

    def uninstall(self, slug: str) -> dict:
        """``Operation: app.Delete``: the document and the files go; the answer is the manifest."""
        doc = self.get(slug)
        if doc is None:
            raise StackError(404, "Not Found", "Application is not installed")  # app.ErrNotFound
        self.couch.delete(self.db, doc["_id"], doc["_rev"])
        shutil.rmtree(self.dir / slug, ignore_errors=True)
        return doc

    def update(self, slug: str, source: str | None) -> tuple[dict, str]:
        """(doc, what happened: upgraded | up-to-date | downgraded)."""
        doc = self.get(slug)
        if doc is None:
            raise StackError(404, "Not Found", "Application is not installed")
        source, version = resolve(slug, source or doc.get("source"), self.doctype)
        before = doc.get("version", "0.0.0")
        if version == before:
            return doc, "up-to-date"
        self._files(slug, version)
        doc.update({"source": source, "version": version, "state": "ready"})
        self.couch.put(self.db, doc)
        return doc, "upgraded" if _version_key(version) > _version_key(before) else "downgraded"


def resource(doc: dict) -> dict:
    attrs = {k: v for k, v in doc.items() if not k.startswith("_")}
    doctype = doc["_id"].split("/", 1)[0]
    base = "/apps/" if doctype == APPS else "/konnectors/"
    return {"type": doctype, "id": doc["_id"], "attributes": attrs, "meta": {"rev": doc.get("_rev")},
            "links": {"self": base + doc["slug"]}}
