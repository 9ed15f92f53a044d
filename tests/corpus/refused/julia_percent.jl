# %%
x = [1, 2, 3]
println(sum(x))
