# %% [markdown]
# Uses a name it never defines

# %%
print(not_defined)
