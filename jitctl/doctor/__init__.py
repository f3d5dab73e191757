"""What an operator runs to check and see: doctor, whoami, roles."""
