"""The demo OAuth2 provider: a Webex-shaped fake that `make demo` runs and the tests use."""
