"""Knowledge documents: upload, list, read, delete; case collections and their owners."""
