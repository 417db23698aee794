/* The learning-rate schedule: linear warm-up, then cosine decay to the minimum. */
#include <starmoe/train.h>

#include <math.h>

double sm_lr_schedule(int64_t s, int64_t steps, int64_t warmup, double lr, double min_lr)
{
    if (warmup > 0 && s <= warmup) return lr * (double)s / (double)warmup;
    if (steps <= warmup) return min_lr;
    double tau = (double)(s - warmup) / (double)(steps - warmup);
    if (tau > 1) tau = 1;
    return min_lr + 0.5 * (lr - min_lr) * (1.0 + cos(M_PI * tau));
}
