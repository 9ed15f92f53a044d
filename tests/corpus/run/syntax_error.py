# %%
ok = True

# %%
if ok print('no colon')
