"""Training's pure pieces: optimizer, step functions, device mesh, class balance, one epoch."""
