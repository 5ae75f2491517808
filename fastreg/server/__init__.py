"""The running server: what a serving process needs beside the registry's own modules."""
