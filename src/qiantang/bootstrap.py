"""The composition root: the one place that names concrete adapters."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from qiantang.adapters.broker.amqtt_ingress import AmqttIngress, TlsConfig
from qiantang.adapters.bus.memory_bus import InMemoryBus
from qiantang.adapters.timeseries.duckdb_store import DuckDBTimeSeriesStore
from qiantang.api.app import create_app
from qiantang.api.deps import Runtime
from qiantang.ports.bus import BusBatch, StateChange, TelemetryBus
from qiantang.registry.database import make_engine, make_sessionmaker, upgrade
from qiantang.services.alink_uplink import AlinkUplink
from qiantang.services.commands import CommandService
from qiantang.services.device_auth import DeviceAuthenticator
from qiantang.services.gateway import GatewayService
from qiantang.services.ingest import IngestCore
from qiantang.services.live_feed import LiveFeed
from qiantang.services.live_feed_client import LiveLimits
from qiantang.services.live_feed_scope import RegistryDirectory
from qiantang.services.models_cache import ModelCache
from qiantang.services.ota import OtaService
from qiantang.services.rate_limit import RateLimiter
from qiantang.services.retention import RetentionJob
from qiantang.services.rule_actions import RuleActions
from qiantang.services.rule_engine import RuleEngine
from qiantang.services.security import DeviceSecrets, load_master_key
from qiantang.services.shadow import ShadowService
from qiantang.services.sparkplug_devices import SparkplugRegistry
from qiantang.services.sparkplug_uplink import SparkplugUplink
from qiantang.services.telemetry_runtime import Telemetry
from qiantang.services.telemetry_state import DeviceStates, MessageLog
from qiantang.services.thingsboard_uplink import ThingsBoardUplink
from qiantang.services.webhooks import WebhookPolicy, WebhookSecrets
from qiantang.settings import Settings

__all__ = ["build_app", "build_runtime", "open_telemetry", "telemetry_lifespan"]

log = logging.getLogger(__name__)


def build_runtime(settings: Settings, *, migrate: bool = True) -> Runtime:
    """Open the registry (migrating it to head) and load the master key."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.registry_url())
    if migrate:
        upgrade(engine)
    master = load_master_key(settings.data_dir, settings.secret_key)
    return Runtime(settings, make_sessionmaker(engine), DeviceSecrets(master))


async def open_telemetry(runtime: Runtime) -> Telemetry:
    """Open the time-series store and start the embedded MQTT broker."""
    settings = runtime.settings
    store = await DuckDBTimeSeriesStore.open(settings.data_dir / "telemetry.duckdb")
    models = ModelCache(runtime.sessions)
    max_age_ms = settings.max_telemetry_age_days * 86_400_000
    bus = InMemoryBus()
    core = IngestCore(store, models, max_age_ms, bus)
    authenticator = DeviceAuthenticator(runtime.sessions, runtime.device_secrets)
    states, message_log = DeviceStates(), MessageLog(settings.message_log_size)
    states.listener = _publish_state_changes(bus)
    limiter = RateLimiter(settings.device_rate_per_s, settings.device_burst)
    uplink = AlinkUplink(authenticator, core, states, message_log, limiter)
    commands = CommandService(runtime.sessions, models, states)
    shadows = ShadowService(runtime.sessions, models)
    uplink.commands, uplink.shadows = commands, shadows
    uplink.gateways = GatewayService(runtime.sessions, runtime.device_secrets, states)
    ota = OtaService(runtime.sessions, runtime.device_secrets, settings.data_dir / "firmware")
    uplink.ota = ota
    thingsboard = ThingsBoardUplink(
        runtime.sessions, runtime.device_secrets, core, states, shadows, commands, message_log
    )
    uplink.thingsboard = thingsboard
    sparkplug = SparkplugUplink(
        SparkplugRegistry(runtime.sessions),
        core,
        states,
        message_log,
        commands,
        host_id=settings.sparkplug_host_id,
        extend_models=settings.sparkplug_extend_models,
    )
    uplink.sparkplug = sparkplug
    # Sparkplug first: an edge node holding an access token is also a ThingsBoard client
    commands.other_protocols = lambda device_id: (
        sparkplug.route(device_id) or thingsboard.route(device_id)
    )
    telemetry = Telemetry(
        store,
        core,
        models,
        authenticator,
        states,
        message_log,
        uplink,
        commands,
        shadows,
        ota,
        thingsboard,
        bus,
    )
    limits = LiveLimits(
        settings.live_queue_frames, settings.live_sample_keys, settings.live_stall_s
    )
    telemetry.live_feed = LiveFeed(bus, RegistryDirectory(runtime.sessions), limits)
    telemetry.live_feed.start()
    telemetry.rules = await _start_rules(runtime, telemetry)
    retention = RetentionJob(runtime.sessions, store, settings.retention_days)
    telemetry.background.append(
        asyncio.create_task(retention.run_forever(settings.retention_interval_s))
    )
    if settings.mqtt_enabled:
        tls = None
        if settings.mqtt_tls_cert and settings.mqtt_tls_key:
            tls = TlsConfig(settings.mqtt_tls_cert, settings.mqtt_tls_key, settings.mqtt_tls_port)
        ingress = AmqttIngress(uplink, settings.mqtt_host, settings.mqtt_port, tls)
        uplink.ingress = commands.ingress = thingsboard.ingress = sparkplug.ingress = ingress
        try:
            await ingress.start()
        except BaseException:
            await telemetry.close()
            raise
        telemetry.ingress = ingress
        telemetry.sparkplug = sparkplug
        await sparkplug.start()
        log.info("MQTT broker on %s:%s", settings.mqtt_host, settings.mqtt_port)
    return telemetry


async def _start_rules(runtime: Runtime, telemetry: Telemetry) -> RuleEngine:
    """The rule engine on its own bus subscription, with the actions executor; alarm
    changes also go to the live feed."""
    settings = runtime.settings
    policy = WebhookPolicy(
        attempts=settings.webhook_attempts,
        backoff_s=settings.webhook_backoff_s,
        queue=settings.webhook_queue,
    )
    secrets = WebhookSecrets(runtime.device_secrets)
    actions = RuleActions(telemetry.commands, telemetry.core, runtime.sessions, secrets, policy)
    subscription = telemetry.bus.subscribe("rules", capacity=8192)
    engine = RuleEngine(runtime.sessions, telemetry.models, subscription, actions)
    feed = telemetry.live_feed
    if feed is not None:
        engine.alarms.listeners.append(
            lambda alarm, change: feed.alarm(
                alarm.enterprise_id, alarm.device_id, alarm.payload(change)
            )
        )
    await engine.start()
    return engine


def _publish_state_changes(bus: TelemetryBus) -> Callable[[int, int, bool], None]:
    """A `DeviceStates` listener that publishes on the bus from the loop's thread (gateway
    sub-device logins change states in worker threads)."""
    loop = asyncio.get_running_loop()

    def publish(device_id: int, now_ms: int, online: bool) -> None:
        batch = BusBatch(states=(StateChange(now_ms, device_id, online),))
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            bus.publish(batch)
        else:
            loop.call_soon_threadsafe(bus.publish, batch)

    return publish


@asynccontextmanager
async def telemetry_lifespan(app: FastAPI) -> AsyncIterator[None]:
    runtime: Runtime = app.state.runtime
    # Points wait up to 250 ms for the store, so they outlive young collections and make the
    # cyclic GC run full collections of the whole heap about once a second (220-400 ms each,
    # measured by bench/ingest.py, docs/performance.md); rarer young collections keep it off
    # the hot path. Reference counting still frees everything acyclic at once.
    gc.set_threshold(10_000, 50, 50)
    runtime.telemetry = await open_telemetry(runtime)
    try:
        yield
    finally:
        telemetry, runtime.telemetry = runtime.telemetry, None
        await telemetry.close()


def build_app(settings: Settings | None = None) -> FastAPI:
    """The whole embedded platform as one ASGI app (registry, API, broker, store)."""
    return create_app(build_runtime(settings or Settings()), lifespan=telemetry_lifespan)
