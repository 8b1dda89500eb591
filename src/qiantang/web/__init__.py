"""The web console: a small single-page app in plain ES modules, served by the platform."""
