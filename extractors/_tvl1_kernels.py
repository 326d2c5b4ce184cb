"""numba kernels of the fused TV-L1 backend (extractors/tvl1_fused.py); importing this module
needs numba. Kept apart so that the rest of the package imports without it, and defined at module
level so that numba can cache the compiled code on disk (``cache=True``).

Every constant is float32 and no kernel uses fast-math: each operation rounds as the
corresponding float operation of OpenCV's tvl1flow.cpp does.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_FLT_EPSILON = np.float32(np.finfo(np.float32).eps)

njit = numba.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, error_model="numpy")


@njit
def centered_gradient(src, dx, dy):
    """tvl1flow.cpp centeredGradient: 0.5·central difference, 0.5·one-sided on the border."""
    h, w = src.shape
    half = np.float32(0.5)
    for y in range(h):
        for x in range(1, w - 1):
            dx[y, x] = half * (src[y, x + 1] - src[y, x - 1])
        dx[y, 0] = half * (src[y, 1] - src[y, 0])
        dx[y, w - 1] = half * (src[y, w - 1] - src[y, w - 2])
    for x in range(w):
        dy[0, x] = half * (src[1, x] - src[0, x])
        dy[h - 1, x] = half * (src[h - 1, x] - src[h - 2, x])
    for y in range(1, h - 1):
        for x in range(w):
            dy[y, x] = half * (src[y + 1, x] - src[y - 1, x])


@njit
def grad_rho(i0, i1w, i1wx, i1wy, u1, u2, grad, rho_c):
    """tvl1flow.cpp calcGradRho: |∇I1w|² and the constant part of the data term."""
    h, w = i0.shape
    for y in range(h):
        for x in range(w):
            gx = i1wx[y, x]
            gy = i1wy[y, x]
            grad[y, x] = gx * gx + gy * gy
            rho_c[y, x] = i1w[y, x] - gx * u1[y, x] - gy * u2[y, x] - i0[y, x]


@njit
def update_u_row(r, u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, l_t, theta, zero_row, sq):
    """estimateV + divergence + estimateU for row r (p rows r-1, r still old); the squared
    update of every pixel goes to ``sq`` for the caller's ordered sum."""
    w = u1.shape[1]
    neg_l_t = -l_t
    zero = np.float32(0.0)
    # p12/p22 of the row above; a zero row above the image gives OpenCV's first-row formula
    # (a - b) + c exactly, because c - 0 == c.
    a12 = p12[r - 1] if r > 0 else zero_row
    a22 = p22[r - 1] if r > 0 else zero_row
    for x in range(w):
        u1k = u1[r, x]
        u2k = u2[r, x]
        gx = i1wx[r, x]
        gy = i1wy[r, x]
        g = grad[r, x]
        rho = rho_c[r, x] + (gx * u1k + gy * u2k)
        if rho < neg_l_t * g:
            d1 = l_t * gx
            d2 = l_t * gy
        elif rho > l_t * g:
            d1 = neg_l_t * gx
            d2 = neg_l_t * gy
        elif g > _FLT_EPSILON:
            fi = -rho / g
            d1 = fi * gx
            d2 = fi * gy
        else:
            d1 = zero
            d2 = zero
        v1 = u1k + d1
        v2 = u2k + d2
        if x > 0:
            div1 = (p11[r, x] - p11[r, x - 1]) + (p12[r, x] - a12[x])
            div2 = (p21[r, x] - p21[r, x - 1]) + (p22[r, x] - a22[x])
        else:  # first column: v1 + v2 - v2_above, in OpenCV's order
            div1 = (p11[r, 0] + p12[r, 0]) - a12[0]
            div2 = (p21[r, 0] + p22[r, 0]) - a22[0]
        n1 = v1 + theta * div1
        n2 = v2 + theta * div2
        u1[r, x] = n1
        u2[r, x] = n2
        e1 = n1 - u1k
        e2 = n2 - u2k
        sq[x] = e1 * e1 + e2 * e2


@njit
def update_p_row(r, u1, u2, p11, p12, p21, p22, taut):
    """forwardGradient + estimateDualVariables for row r (u rows r, r+1 already new)."""
    h, w = u1.shape
    one = np.float32(1.0)
    zero = np.float32(0.0)
    last = r == h - 1
    for x in range(w):
        if x < w - 1:
            u1x = u1[r, x + 1] - u1[r, x]
            u2x = u2[r, x + 1] - u2[r, x]
        else:
            u1x = zero
            u2x = zero
        if not last:
            u1y = u1[r + 1, x] - u1[r, x]
            u2y = u2[r + 1, x] - u2[r, x]
        else:
            u1y = zero
            u2y = zero
        # OpenCV: static_cast<float>(hypot(...)) in double; float squares are exact in double
        g1 = np.float32(math.sqrt(np.float64(u1x) * np.float64(u1x) + np.float64(u1y) * np.float64(u1y)))
        g2 = np.float32(math.sqrt(np.float64(u2x) * np.float64(u2x) + np.float64(u2y) * np.float64(u2y)))
        ng1 = one + taut * g1
        ng2 = one + taut * g2
        p11[r, x] = (p11[r, x] + taut * u1x) / ng1
        p12[r, x] = (p12[r, x] + taut * u1y) / ng1
        p21[r, x] = (p21[r, x] + taut * u2x) / ng2
        p22[r, x] = (p22[r, x] + taut * u2y) / ng2


@njit
def inner_iterations(u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, l_t, theta, taut, scaled_eps, max_iter):
    """Up to ``max_iter`` iterations, stopping as soon as the float32 error <= scaled_eps.
    Returns (last error, iterations run)."""
    h, w = u1.shape
    zero_row = np.zeros(w, np.float32)
    sq = np.empty(w, np.float32)
    error = np.float32(np.inf)
    n = 0
    while n < max_iter and error > scaled_eps:
        error = np.float32(0.0)
        for r in range(h):
            update_u_row(r, u1, u2, p11, p12, p21, p22, i1wx, i1wy, grad, rho_c, l_t, theta, zero_row, sq)
            for x in range(w):  # OpenCV's running float sum, row-major
                error += sq[x]
            if r > 0:
                update_p_row(r - 1, u1, u2, p11, p12, p21, p22, taut)
        update_p_row(h - 1, u1, u2, p11, p12, p21, p22, taut)
        n += 1
    return error, n
