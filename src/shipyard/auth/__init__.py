"""Who is calling and what they may do: passwords, sessions, tokens, throttles, rbac."""
