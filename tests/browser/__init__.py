"""Browser tests: the console in real headless Chromium."""
