"""Pictures and reports. Nothing here decides anything: it draws records and decisions made elsewhere."""
