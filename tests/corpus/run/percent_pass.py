# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
# ---

# %% [markdown]
# # Percent format

# %%
import math

# %%
print(round(math.pi, 4))
