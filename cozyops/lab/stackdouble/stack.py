"""The double's state and operations shared by its admin and public APIs."""

from __future__ import annotations

import time
import uuid

from . import realtime, tokens
from .apps import Apps
from .config import Config
from .couch import GLOBAL_INSTANCES, Couch, CouchError, db_name
from .httpd import log
from .instances import DOCTYPES, Instances, StackError, unb64
from .secret import Verifier
from .vfs import VFS, now


class Stack:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.couch = Couch(config.couchdb_url)
        self.instances = Instances(self.couch, config.subdomains == "flat")
        self.verifier = Verifier()
        self.fs_root = config.fs_root
        self.hub = realtime.Hub()

    @property
    def flat(self) -> bool:
        return self.config.subdomains == "flat"

    def wait_for_couch(self, timeout: float = 30.0) -> None:
        """cozy-stack needs CouchDB at start-up; the double waits for it a little (init scripts race)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.couch.ok("GET", "/")
                break
            except CouchError as error:
                if time.monotonic() > deadline:
                    raise StackError(500, "Unqualified error", error.reason) from None
                time.sleep(0.2)
        self.couch.create_db(GLOBAL_INSTANCES)

    def vfs(self, inst: dict) -> VFS:
        return VFS(self.couch, self.fs_root, inst)

    def apps(self, inst: dict, doctype: str = "io.cozy.apps") -> Apps:
        return Apps(self.couch, self.fs_root, inst, doctype)

    # --- lifecycle
    def create_instance(self, q) -> dict:
        with self.instances.lock:
            doc = self.instances.new_doc(q)
            extra_settings = doc.pop("_settings")
            self.instances.save(doc)
        try:
            for doctype in DOCTYPES:
                self.couch.create_db(db_name(doc["prefix"], doctype))
            settings = {"_id": "io.cozy.settings.instance", **self.instances.settings_from_query(q),
                        **extra_settings}
            self.couch.put(db_name(doc["prefix"], "io.cozy.settings"), settings)
            self._myself(doc, settings)
            self.vfs(doc).init_tree(doc["locale"])
            apps = self.apps(doc)
            for slug in [s.strip() for s in (q.param("Apps") or "").split(",") if s.strip()]:
                try:
                    apps.install(slug, None)
                except StackError as error:
                    # §1.2 step 6: a failure is only logged.
                    log(f"[admin] {doc['domain']}: app {slug} not installed: {error.detail}")
            self.instances.save(doc)
        except Exception:
            self._remove(doc)
            raise
        return doc

    def _myself(self, doc: dict, settings: dict) -> None:
        """The "myself" contact (§1.2): the instance's owner, ``me: true``."""
        at = now()
        contact: dict = {"_id": uuid.uuid4().hex, "me": True,
                         "fullname": settings.get("public_name", ""),
                         "cozy": [{"url": f"https://{doc['domain']}", "primary": True}],
                         "trashed": False,
                         "cozyMetadata": {"doctypeVersion": 2, "metadataVersion": 1, "createdAt": at,
                                          "updatedAt": at, "createdByApp": "", "updatedByApps": []}}
        if settings.get("email"):
            contact["email"] = [{"address": settings["email"], "primary": True}]
        if settings.get("phone"):
            contact["phone"] = [{"number": settings["phone"], "primary": True}]
        self.couch.put(db_name(doc["prefix"], "io.cozy.contacts"), contact)

    def destroy_instance(self, domain: str) -> None:
        with self.instances.lock:
            doc = self.instances.require(domain)
            if doc.get("deleting"):
                raise StackError(500, "Internal Server Error", "The deletion has already been requested")
            doc["deleting"] = True
            self.instances.save(doc)
        self._remove(doc)

    def _remove(self, doc: dict) -> None:
        for name, _ in self.couch.instance_dbs(doc["prefix"]):
            self.couch.delete_db(name)
        self.vfs(doc).destroy_all()
        current = self.couch.get(GLOBAL_INSTANCES, doc["_id"])
        if current is not None:
            self.couch.delete(GLOBAL_INSTANCES, doc["_id"], current["_rev"])
        self.instances.forget()

    def update_settings(self, doc: dict, changes: dict) -> None:
        if not changes:
            return
        name = db_name(doc["prefix"], "io.cozy.settings")
        settings = self.couch.get(name, "io.cozy.settings.instance") or {"_id": "io.cozy.settings.instance"}
        settings.update(changes)
        self.couch.put(name, settings)

    # --- tokens (§1.8, files-data §4)
    def make_token(self, doc: dict, audience: str, scope: str, subject: str, expire: str | None) -> str:
        canonical = tokens.AUDIENCES.get(audience)
        if canonical is None:
            raise LookupError(audience)
        issued = time.time()
        if expire and expire != "0s":
            duration = tokens.parse_go_duration(expire)
            validity = tokens.VALIDITY.get(canonical)
            if validity is not None:
                issued += duration - validity
        secret = unb64(doc.get(tokens.SECRET_OF[canonical]))
        return tokens.make(secret, canonical, doc["domain"], subject, scope, issued)

    def secrets_of(self, doc: dict) -> dict[str, bytes]:
        return {name: unb64(doc.get(name)) for name in ("cli_secret", "session_secret", "oauth_secret")}
