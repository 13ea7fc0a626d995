"""Security: roles enforced by the code that writes, confined paths, retention caps, no token leaks."""
