"""Product identification from what servers announce: tables (data), and small matchers."""
