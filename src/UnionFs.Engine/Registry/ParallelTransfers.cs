namespace UnionFs.Engine.Registry;

/// <summary>Runs blob transfers a few at a time; the first failure cancels the rest and is the one reported.</summary>
static class ParallelTransfers
{
    public static async Task RunAll<T>(IReadOnlyList<T> items, int parallel, CancellationToken ct,
                                       Func<T, int, CancellationToken, Task> transfer)
    {
        using var gate = new SemaphoreSlim(Math.Max(1, parallel));
        using var failed = CancellationTokenSource.CreateLinkedTokenSource(ct);
        Exception? firstError = null;
        var tasks = items.Select((item, i) => Task.Run(async () =>
        {
            await gate.WaitAsync(failed.Token);
            try { await transfer(item, i, failed.Token); }
            catch (Exception e)
            {
                // Remember the failure that started it, not the cancellations it causes in the other transfers.
                if (!failed.IsCancellationRequested) Interlocked.CompareExchange(ref firstError, e, null);
                failed.Cancel();
                throw;
            }
            finally { gate.Release(); }
        })).ToList();
        try { await Task.WhenAll(tasks); }
        catch
        {
            var errors = tasks.Where(t => t.IsFaulted).SelectMany(t => t.Exception!.InnerExceptions).ToList();
            var first = firstError ?? errors.FirstOrDefault(e => e is not OperationCanceledException) ?? errors.FirstOrDefault();
            if (first is not null) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(first).Throw();
            throw;
        }
    }
}
