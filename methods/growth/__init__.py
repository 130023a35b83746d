"""Growth substrate shared by every growth method: statistics, proposals and line search, schedule."""
