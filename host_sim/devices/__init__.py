"""Models of each sensor chip, behind the same bus contracts the drivers use."""
