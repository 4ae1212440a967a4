"""Operations on stored tables: quality checks, retention, maintenance, status."""
