print("ichd")
