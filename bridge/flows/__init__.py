"""The browser side of a hand-off: ``/authorize`` and the challenge pages."""
