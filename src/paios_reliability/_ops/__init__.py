"""Operations: processes, worker recycling, service units."""
