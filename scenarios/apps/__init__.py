"""Small apps that scenarios run inside instances and pods."""
