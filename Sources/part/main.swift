print("part")
