"""The engine as a service: sessions, the stdio agent, its clients (local, ssh), metrics."""
