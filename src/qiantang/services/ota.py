"""OTA: firmware packages per product, upgrade jobs per device, signed resumable downloads.

A job is ``queued`` until pushed, ``pushed`` once the device was sent the upgrade message,
``in_progress`` while it reports steps, ``succeeded`` when it reports the new version, and
``failed`` on a negative step (download, verification or flashing failed). Downloads are
authorised by a URL signed with the master key for one device and firmware, valid for a day.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from qiantang.domain.access import Principal
from qiantang.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from qiantang.ports.ingress import Identity
from qiantang.protocols import alink_ota
from qiantang.registry.tables import Device, Firmware, OtaJob, Product
from qiantang.services.common import utcnow
from qiantang.services.security import DeviceSecrets

__all__ = ["OtaService", "Push", "upgrade_topic"]

URL_LIFETIME_S = 86_400
ACTIVE = ("queued", "pushed", "in_progress")


def upgrade_topic(product_key: str, device_name: str) -> str:
    """Where a device receives upgrade pushes."""
    return f"/ota/device/upgrade/{product_key}/{device_name}"


@dataclass(frozen=True, slots=True)
class Push:
    """An upgrade message to publish."""

    job_id: int
    device_id: int
    topic: str
    payload: bytes


class OtaService:
    """Firmware, jobs and device reports (blocking: call from worker threads)."""

    def __init__(
        self, sessions: sessionmaker[Session], secrets: DeviceSecrets, firmware_dir: Path
    ) -> None:
        self._sessions = sessions
        self._secrets = secrets
        self._dir = firmware_dir

    # --- firmware ----------------------------------------------------------------------------
    @staticmethod
    def _product(db: Session, who: Principal, product_id: int, write: bool) -> Product:
        product = db.get(Product, product_id)
        if product is None or not who.is_member_of(product.enterprise_id):
            raise NotFound("product", product_id)
        if write and not who.writes_in(product.enterprise_id):
            raise PermissionDenied("viewers may not manage firmware")
        return product

    def upload(
        self,
        who: Principal,
        product_id: int,
        *,
        module: str,
        version: str,
        data: bytes,
        sha256: str | None,
        description: str = "",
    ) -> Firmware:
        """Store a package; `sha256`, when given, must match what arrived."""
        if not data:
            raise InvalidInput.of("body", "min_bytes", "the firmware package is empty")
        digest = hashlib.sha256(data).hexdigest()
        if sha256 is not None and not hmac.compare_digest(digest, sha256.lower()):
            raise InvalidInput.of("sha256", "checksum", f"the package's SHA-256 is {digest}")
        with self._sessions() as db:
            product = self._product(db, who, product_id, write=True)
            clash = select(Firmware.id).where(
                Firmware.product_id == product.id,
                Firmware.module == module,
                Firmware.version == version,
            )
            if db.scalar(clash):
                raise Conflict.of("version", "unique", "this module already has that version")
            self._dir.mkdir(parents=True, exist_ok=True)
            path = self._dir / f"{uuid.uuid4().hex}.bin"
            path.write_bytes(data)
            firmware = Firmware(
                product_id=product.id,
                enterprise_id=product.enterprise_id,
                module=module,
                version=version,
                size=len(data),
                sha256=digest,
                md5=hashlib.md5(data, usedforsecurity=False).hexdigest(),
                path=str(path),
                description=description,
                created_at=utcnow(),
            )
            db.add(firmware)
            db.commit()
            return firmware

    def firmware(self, who: Principal, firmware_id: int) -> Firmware:
        """One package of the caller's enterprises."""
        with self._sessions() as db:
            firmware = db.get(Firmware, firmware_id)
            if firmware is None or not who.is_member_of(firmware.enterprise_id):
                raise NotFound("firmware", firmware_id)
            return firmware

    def list_firmware(self, who: Principal, product_id: int) -> list[Firmware]:
        """A product's packages."""
        with self._sessions() as db:
            self._product(db, who, product_id, write=False)
            stmt = select(Firmware).where(Firmware.product_id == product_id)
            return list(db.scalars(stmt.order_by(Firmware.id)))

    # --- jobs ----------------------------------------------------------------------------------
    def create_jobs(
        self, who: Principal, firmware_id: int, device_ids: list[int] | None, base_url: str
    ) -> list[OtaJob]:
        """Jobs for the named devices of the package's product (None: every device)."""
        firmware = self.firmware(who, firmware_id)
        with self._sessions() as db:
            self._product(db, who, firmware.product_id, write=True)
            stmt = select(Device).where(Device.product_id == firmware.product_id)
            devices = {d.id: d for d in db.scalars(stmt)}
            wanted = list(devices) if device_ids is None else device_ids
            for i, device_id in enumerate(wanted):
                if device_id not in devices:
                    raise InvalidInput.of(
                        f"device_ids[{i}]", "exists", "no such device of this product"
                    )
            now, jobs = utcnow(), []
            for device_id in dict.fromkeys(wanted):
                job = OtaJob(
                    firmware_id=firmware.id,
                    device_id=device_id,
                    status="queued",
                    progress=0,
                    message="",
                    url=self._signed_url(base_url, firmware.id, device_id),
                    created_at=now,
                    updated_at=now,
                )
                db.add(job)
                jobs.append(job)
            db.commit()
            return jobs

    def jobs(self, who: Principal, firmware_id: int) -> list[OtaJob]:
        """Every job of a package."""
        self.firmware(who, firmware_id)
        with self._sessions() as db:
            stmt = select(OtaJob).where(OtaJob.firmware_id == firmware_id)
            return list(db.scalars(stmt.order_by(OtaJob.id)))

    def pushes(
        self, device_ids: list[int] | None = None, job_ids: list[int] | None = None
    ) -> list[Push]:
        """Upgrade messages for queued or pushed jobs of these devices (or these jobs)."""
        with self._sessions() as db:
            stmt = (
                select(OtaJob, Firmware, Device, Product)
                .join(Firmware, Firmware.id == OtaJob.firmware_id)
                .join(Device, Device.id == OtaJob.device_id)
                .join(Product, Product.id == Device.product_id)
                .where(OtaJob.status.in_(("queued", "pushed")))
            )
            if device_ids is not None:
                stmt = stmt.where(OtaJob.device_id.in_(device_ids))
            if job_ids is not None:
                stmt = stmt.where(OtaJob.id.in_(job_ids))
            return [
                Push(
                    job.id,
                    device.id,
                    upgrade_topic(product.product_key, device.device_name),
                    alink_ota.encode_upgrade(
                        str(job.id),
                        size=fw.size,
                        version=fw.version,
                        url=job.url,
                        sha256=fw.sha256,
                        md5=fw.md5,
                        module=fw.module,
                    ),
                )
                for job, fw, device, product in db.execute(stmt)
            ]

    def mark_pushed(self, job_ids: list[int]) -> None:
        """The upgrade message went out."""
        with self._sessions() as db:
            for job in db.scalars(select(OtaJob).where(OtaJob.id.in_(job_ids))):
                if job.status == "queued":
                    job.status, job.updated_at = "pushed", utcnow()
            db.commit()

    # --- device reports ----------------------------------------------------------------------
    def _active_job(self, db: Session, device_id: int, module: str) -> OtaJob | None:
        stmt = (
            select(OtaJob)
            .join(Firmware, Firmware.id == OtaJob.firmware_id)
            .where(
                OtaJob.device_id == device_id, OtaJob.status.in_(ACTIVE), Firmware.module == module
            )
            .order_by(OtaJob.id.desc())
        )
        return db.scalars(stmt).first()

    def progress(self, identity: Identity, payload: bytes) -> str:
        """Apply a progress report; returns what happened, for the message log."""
        report = alink_ota.decode_progress(payload)
        with self._sessions() as db:
            job = self._active_job(db, identity.device_id, report.module)
            if job is None:
                return "no upgrade in progress"
            if report.step < 0:
                job.status = "failed"
                job.message = f"{alink_ota.FAILURE_STEPS[report.step]}: {report.desc}".strip(": ")
            else:
                job.status, job.progress, job.message = "in_progress", report.step, report.desc
            job.updated_at = utcnow()
            db.commit()
            return f"job {job.id} {job.status} {job.progress}%"

    def inform(self, identity: Identity, payload: bytes) -> str:
        """Record the device's version; a job for that version succeeds."""
        report = alink_ota.decode_inform(payload)
        with self._sessions() as db:
            device = db.get(Device, identity.device_id)
            assert device is not None
            device.firmware_versions = {
                **(device.firmware_versions or {}),
                report.module: report.version,
            }
            job = self._active_job(db, device.id, report.module)
            outcome = f"version {report.version}"
            if job is not None:
                firmware = db.get(Firmware, job.firmware_id)
                if firmware is not None and firmware.version == report.version:
                    job.status, job.progress, job.updated_at = "succeeded", 100, utcnow()
                    outcome += f", job {job.id} succeeded"
            db.commit()
            return outcome

    # --- downloads ---------------------------------------------------------------------------
    def _signed_url(self, base_url: str, firmware_id: int, device_id: int) -> str:
        expires = int(time.time()) + URL_LIFETIME_S
        token = self._secrets.mac(f"fw:{firmware_id}:{device_id}:{expires}")
        return (
            f"{base_url.rstrip('/')}/api/v1/ota/download/{firmware_id}"
            f"?device={device_id}&expires={expires}&token={token}"
        )

    def download(self, firmware_id: int, device_id: int, expires: int, token: str) -> Firmware:
        """The package, if the signed URL checks out and has not expired."""
        expected = self._secrets.mac(f"fw:{firmware_id}:{device_id}:{expires}")
        if expires < time.time() or not hmac.compare_digest(expected, token):
            raise NotFound("firmware", firmware_id)
        with self._sessions() as db:
            firmware = db.get(Firmware, firmware_id)
            if firmware is None:
                raise NotFound("firmware", firmware_id)
            return firmware
