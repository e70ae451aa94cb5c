"""The actor primitives every actor is built from.

- ``clock``: injected time (``RealClock``, and ``FakeClock`` for tests);
- ``mailbox``: bounded typed mailboxes, addresses and reply slots;
- ``supervisor``: OTP-style supervision (restart types, strategies, intensity);
- ``runsup``: the run supervisor, which runs temporary run actors on reusable workers.
"""
