"""The token API: views, key and legacy-header authentication, JSON errors, the throttle."""
