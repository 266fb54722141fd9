using System.Text;
using UnionFs.Engine.Cli;

namespace UnionFs.Engine.Registry;

/// <summary>
/// Several <see cref="Progress"/> bars at once, one terminal line each, like `docker pull`: every bar
/// writes into its own line buffer and the board redraws all lines (cursor up, clear line) under a lock.
/// Off a terminal the bars are plain <see cref="Progress"/> objects writing one summary line each when done.
/// </summary>
public sealed class ProgressBoard
{
    readonly TextWriter _out;
    readonly bool _tty;
    readonly List<string> _lines = new();
    readonly object _lock = new();
    int _drawn;

    public ProgressBoard(TextWriter? output = null, bool? tty = null)
    {
        _out = output ?? Console.Error;
        _tty = (tty ?? Progress.Interactive) && !Progress.Quiet;
    }

    public Progress Add(string label, long total)
    {
        if (!_tty) return new Progress(label, total, _out, tty: false);
        int index;
        lock (_lock) { index = _lines.Count; _lines.Add(label); }
        return new Progress(label, total, new LineWriter(this, index), tty: true);
    }

    void Update(int index, string text)
    {
        lock (_lock)
        {
            _lines[index] = text;
            var sb = new StringBuilder();
            if (_drawn > 0) sb.Append("\x1b[").Append(_drawn).Append('A');
            foreach (var l in _lines) sb.Append("\r\x1b[2K").Append(l).Append('\n');
            _drawn = _lines.Count;
            _out.Write(sb.ToString());
            _out.Flush();
        }
    }

    /// <summary>Collects what a Progress writes ("\r" starts the line over, "\n" ends it) and hands the line to the board.</summary>
    sealed class LineWriter(ProgressBoard board, int index) : TextWriter
    {
        readonly StringBuilder _cur = new();
        public override Encoding Encoding => Encoding.UTF8;

        public override void Write(char value)
        {
            switch (value)
            {
                case '\r': _cur.Clear(); break;
                case '\n': Publish(); _cur.Clear(); break;
                default: _cur.Append(value); break;
            }
        }

        public override void Write(string? value) { if (value is not null) foreach (var c in value) Write(c); }

        public override void Flush() => Publish();

        void Publish()
        {
            var text = _cur.ToString().TrimEnd();
            if (text.Length > 0) board.Update(index, text);
        }
    }
}
