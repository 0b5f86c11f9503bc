"""Real protocol peers started by tests (sshd, ...) and their pytest fixtures."""
