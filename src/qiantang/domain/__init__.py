"""The domain: platform tree, enterprises, thing models, identifiers, telemetry. No I/O."""
