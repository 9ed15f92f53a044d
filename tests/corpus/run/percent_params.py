# %% tags=["parameters"]
scale = 2

# %%
print(scale * 21)
