# %%
x = 1

# %%
%undefined-line-magic

# %%
print(x)
