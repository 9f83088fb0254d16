"""rawsigma subpackage."""
