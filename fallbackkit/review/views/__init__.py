"""The station's screens, one blueprint per job a clerk or supervisor does."""
from __future__ import annotations

from . import admin, auth, conflicts, dashboard, decisions, identities, images, quarantine, queue, worklist

BLUEPRINTS = (auth.bp, dashboard.bp, queue.bp, images.bp, decisions.bp, admin.bp, conflicts.bp, quarantine.bp,
              identities.bp, worklist.bp)
