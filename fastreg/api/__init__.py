"""HTTP only: parse the request, call the registry domain, shape the response."""
