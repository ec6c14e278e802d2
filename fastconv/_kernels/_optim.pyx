"""Compiled optimiser updates: SGD (momentum, Nesterov), AdaGrad, RMSProp and Adam, in place,
in one parallel loop over all the parameters of a step.

The Python front (fastconv/optim.py) passes a table of addresses, one row per parameter
(the parameter, its gradient, then its state arrays, all of one dtype and one memory order,
read flat), and a table of tasks (parameter row, first element, end): pieces of at most a
few thousand elements, so that threads share large parameters and small ones cost one task.
The kernels trust both tables. Each update is the formula of fastconv.reference.optim with
the same operations in the same order and dtype, so the results agree to the last bit where
the compiler does not contract a multiply and an add into one (it does not in the default
x86-64 build, which has no FMA instructions).
"""
from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf


cdef inline floating square_root(floating value) noexcept nogil:
    if floating is float:
        return sqrtf(value)
    else:
        return sqrt(value)


cdef inline floating* address(const Py_ssize_t[:, ::1] pointers, Py_ssize_t row, Py_ssize_t column,
                              floating marker) noexcept nogil:
    return <floating*> <void*> pointers[row, column]


cdef void sgd_task(floating* param, const floating* grad, floating* velocity, Py_ssize_t start,
                   Py_ssize_t stop, floating lr, floating momentum, int mode) noexcept nogil:
    """mode 0: param -= lr * grad; 1: momentum; 2: Nesterov (see fastconv.optim.SGD)."""
    cdef Py_ssize_t i
    cdef floating step, v
    if mode == 0:
        for i in range(start, stop):
            param[i] = param[i] - lr * grad[i]
        return
    for i in range(start, stop):
        step = lr * grad[i]
        v = velocity[i] * momentum
        v = v - step
        velocity[i] = v
        if mode == 2:
            param[i] = param[i] + (momentum * v - step)
        else:
            param[i] = param[i] + v


def sgd(const Py_ssize_t[:, ::1] pointers, const Py_ssize_t[:, ::1] tasks,
        const floating[::1] constants, int mode, int num_threads):
    """pointers (params, 3): param, grad, velocity (unused in mode 0); tasks (tasks, 3);
    constants (lr, momentum) in the parameters' dtype."""
    cdef Py_ssize_t task, row
    cdef floating lr = constants[0], momentum = constants[1]
    for task in prange(tasks.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        row = tasks[task, 0]
        sgd_task(address(pointers, row, 0, lr), address(pointers, row, 1, lr),
                 address(pointers, row, 2, lr), tasks[task, 1], tasks[task, 2], lr, momentum,
                 mode)


cdef void scaled_task(floating* param, const floating* grad, floating* sum_sq, Py_ssize_t start,
                      Py_ssize_t stop, floating lr, floating decay, floating one_minus_decay,
                      floating eps, bint leaky) noexcept nogil:
    """AdaGrad (sum_sq += grad**2) or, leaky, RMSProp (sum_sq = decay * sum_sq +
    (1 - decay) * grad**2); then param -= lr * grad / (sqrt(sum_sq) + eps)."""
    cdef Py_ssize_t i
    cdef floating g, s
    for i in range(start, stop):
        g = grad[i]
        if leaky:
            s = sum_sq[i] * decay
            s = s + one_minus_decay * g * g
        else:
            s = sum_sq[i] + g * g
        sum_sq[i] = s
        param[i] = param[i] - lr * g / (square_root(s) + eps)


def scaled(const Py_ssize_t[:, ::1] pointers, const Py_ssize_t[:, ::1] tasks,
           const floating[::1] constants, bint leaky, int num_threads):
    """AdaGrad (leaky False) or RMSProp; pointers (params, 3): param, grad, squares;
    constants (lr, decay, 1 - decay, eps) in the parameters' dtype."""
    cdef Py_ssize_t task, row
    cdef floating lr = constants[0], decay = constants[1]
    cdef floating one_minus_decay = constants[2], eps = constants[3]
    for task in prange(tasks.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        row = tasks[task, 0]
        scaled_task(address(pointers, row, 0, lr), address(pointers, row, 1, lr),
                    address(pointers, row, 2, lr), tasks[task, 1], tasks[task, 2], lr, decay,
                    one_minus_decay, eps, leaky)


cdef void adam_task(floating* param, const floating* grad, floating* mean, floating* mean_sq,
                    Py_ssize_t start, Py_ssize_t stop, floating beta1, floating one_minus_beta1,
                    floating beta2, floating one_minus_beta2, floating step_size,
                    floating correction, floating eps) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating g, m, v
    for i in range(start, stop):
        g = grad[i]
        m = mean[i] * beta1
        m = m + one_minus_beta1 * g
        mean[i] = m
        v = mean_sq[i] * beta2
        v = v + one_minus_beta2 * g * g
        mean_sq[i] = v
        param[i] = param[i] - step_size * m / (square_root(v / correction) + eps)


def adam(const Py_ssize_t[:, ::1] pointers, const Py_ssize_t[:, ::1] tasks,
         const floating[:, ::1] per_param, const floating[::1] constants, int num_threads):
    """pointers (params, 4): param, grad, mean, mean_sq; per_param (params, 2): each
    parameter's step size lr / (1 - beta1**t) and correction 1 - beta2**t at its step t;
    constants (beta1, 1 - beta1, beta2, 1 - beta2, eps) in the parameters' dtype."""
    cdef Py_ssize_t task, row
    cdef floating beta1 = constants[0], one_minus_beta1 = constants[1]
    cdef floating beta2 = constants[2], one_minus_beta2 = constants[3], eps = constants[4]
    for task in prange(tasks.shape[0], nogil=True, schedule="static", num_threads=num_threads):
        row = tasks[task, 0]
        adam_task(address(pointers, row, 0, eps), address(pointers, row, 1, eps),
                  address(pointers, row, 2, eps), address(pointers, row, 3, eps),
                  tasks[task, 1], tasks[task, 2], beta1, one_minus_beta1, beta2, one_minus_beta2,
                  per_param[row, 0], per_param[row, 1], eps)
