"""The optimizer lab, after the CS231n optimization notes: loss landscapes, random-search baselines, numerical
gradients, gradient checks.

* :mod:`~evoprop.lab.losses` — multiclass SVM and softmax losses on class scores;
* :mod:`~evoprop.lab.linear` — the linear classifier W (C x (D + 1), the bias trick) with hand-derived gradients;
* :mod:`~evoprop.lab.directions` — Gaussian and filter-normalised (Li et al. 2018) directions in weight space;
* :mod:`~evoprop.lab.evaluate` — loss and accuracy of many parameter vectors at once (the population evaluator);
* :mod:`~evoprop.lab.landscape` — the loss along a line and over a plane through the weights;
* :mod:`~evoprop.lab.search` — random search, random local search and gradient descent;
* :mod:`~evoprop.lab.gradcheck` — analytic versus numerical gradients;
* :mod:`~evoprop.lab.stepsize` — the loss after one gradient step, for many step sizes;
* :mod:`~evoprop.lab.precond` — the Hessian lens: each optimizer's step against Newton's (Nocedal & Wright 2006);
* :mod:`~evoprop.lab.problem` — a model and its data, from a saved run or fresh;
* :mod:`~evoprop.lab.plots` — what the figures share (each experiment draws its own).

Each experiment is a function of a problem and a small settings object that returns a result that prints
(``summary()``) and writes (``write(out)``) itself: :func:`~evoprop.lab.landscape.run_landscape`,
:func:`~evoprop.lab.search.run_search`, :func:`~evoprop.lab.gradcheck.run_gradcheck` (prints only),
:func:`~evoprop.lab.stepsize.run_stepsize` and :func:`~evoprop.lab.precond.run_precond`. The command-line
front ends ``evoprop landscape``, ``search``, ``gradcheck``, ``stepsize`` and ``precond`` parse options and call them.
"""
