# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # How high does an epidemic peak? A Monte-Carlo SIR study
#
# A jupytext percent notebook (a plain `.py` file that reprokit runs as a notebook).
# The SIR model is integrated with SciPy for many draws of the uncertain transmission
# and recovery rates; the headline number is the mean peak share of the population
# infected at once, with its 95% confidence interval, and the 2.5–97.5 % range of the
# peak over the draws.

# %% tags=["parameters"]
seed = 0
n_draws = 120
days = 180

# %%
# %load_ext reprokit
# %repro start --seed $seed

# %%
import numpy as np
from scipy import stats
from scipy.integrate import solve_ivp


def sir(t, y, beta, gamma):
    s, i, r = y
    return [-beta * s * i, beta * s * i - gamma * i, gamma * i]


rng = np.random.default_rng(seed)
beta = rng.lognormal(mean=np.log(0.32), sigma=0.12, size=n_draws)  # contacts x transmission / day
gamma = 1.0 / rng.uniform(5.0, 9.0, size=n_draws)  # recovery rate: 5 to 9 days infectious
t_eval = np.arange(days + 1.0)

curves = np.empty((n_draws, t_eval.size))
for k in range(n_draws):
    solution = solve_ivp(
        sir, (0.0, float(days)), [0.999, 0.001, 0.0], args=(beta[k], gamma[k]),
        t_eval=t_eval, rtol=1e-8, atol=1e-10,
    )
    curves[k] = solution.y[1]
peaks = curves.max(axis=1)
peak_days = curves.argmax(axis=1)
print(f"R0 from {np.min(beta / gamma):.2f} to {np.max(beta / gamma):.2f}")

# %%
mean_peak = float(peaks.mean())
sem = stats.sem(peaks)
ci = stats.t.interval(0.95, df=n_draws - 1, loc=mean_peak, scale=sem)
spread = np.percentile(peaks, [2.5, 97.5])
print(f"mean peak {mean_peak:.4f} (95% CI {ci[0]:.4f} to {ci[1]:.4f}); "
      f"draws range {spread[0]:.4f} to {spread[1]:.4f}; median peak day {np.median(peak_days):.0f}")

# %%
import reprokit

reprokit.result("mean_peak_infected", mean_peak, rtol=1e-7)
reprokit.result("mean_peak_ci95", [float(ci[0]), float(ci[1])], rtol=1e-7)
reprokit.result("peak_range_95", spread, rtol=1e-7)
reprokit.result("median_peak_day", float(np.median(peak_days)))
reprokit.result("mean_infected_curve", curves.mean(axis=0), rtol=1e-7, atol=1e-12)

# %%
# %repro end
