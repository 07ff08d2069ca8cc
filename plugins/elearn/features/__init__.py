"""Feature definitions shared by training programs and Bento services (one definition each)."""
