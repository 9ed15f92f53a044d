# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: light
# ---

# A light-format notebook

items = [3, 1, 2]

print(sorted(items))
