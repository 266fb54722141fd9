using Microsoft.Extensions.Logging;

namespace UnionFs.Engine.Cli;

/// <summary>A minimal ILoggerProvider writing "unionfs[level]: message" to stderr; reflection-free for NativeAOT.</summary>
public sealed class StderrLoggerProvider : ILoggerProvider
{
    public ILogger CreateLogger(string categoryName) => new StderrLogger(categoryName);
    public void Dispose() { }

    sealed class StderrLogger(string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;
        public void Log<TState>(LogLevel level, EventId id, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            string lvl = level switch
            {
                LogLevel.Trace => "trace", LogLevel.Debug => "debug", LogLevel.Information => "info",
                LogLevel.Warning => "warn", LogLevel.Error => "error", _ => "crit",
            };
            Console.Error.WriteLine($"unionfs[{lvl}] {category.Split('.')[^1]}: {formatter(state, exception)}");
        }
    }
}
