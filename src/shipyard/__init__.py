"""Shipyard: a self-hosted deployment platform."""
