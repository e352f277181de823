"""Benchmark suite for discord-gateway (not part of CI's pass/fail): see README.md."""
