#!/usr/bin/perl
# report.pl [--brief] RAW.tsv "workloads" "impls": the Markdown table of medians and ratios.
# RAW lines: metric \t impl \t round \t value|error. Ratios are always "how much longer UnionFs
# takes" (>1 = UnionFs slower): time/time for seconds, other/unionfs for throughput; for RSS
# it is unionfs/fuse-overlayfs (>1 = UnionFs uses more memory).
use strict; use warnings; our $countline;
my $brief = 0; if (@ARGV && $ARGV[0] eq '--brief') { $brief = 1; shift; }
my ($raw, $wls, $impls) = @ARGV;
my @impls = split ' ', $impls;
my (%vals, %errs, %n);
open my $fh, '<', $raw or die "$raw: $!";
while (<$fh>) {
  chomp; my ($m, $i, $r, $v) = split /\t/;
  next unless defined $v;
  $n{$m}{$i}++;
  if ($v eq 'error') { $errs{$m}{$i}++ } else { push @{$vals{$m}{$i}}, $v }
}
sub median { my @s = sort { $a <=> $b } @_; return undef unless @s; my $k = int(@s / 2);
             return @s % 2 ? $s[$k] : ($s[$k-1] + $s[$k]) / 2; }
my %label = (
  'mount-latency' => ['mount latency (mount → first stat)', 's'],
  'find-cold' => ['`find` walk, cold', 's'], 'find-warm' => ['`find` walk, warm', 's'],
  'stat-all' => ['`find -printf "%s %i"` (stat every entry), cold', 's'],
  'tar' => ['`tar c` of the tree (read every file), cold', 's'], 'grep' => ['`grep -r`, cold', 's'],
  'untar' => ['untar small files + `sync`', 's'],
  'append-nofsync' => ['append 1 B to 1 GiB lower file (copy-up), no fsync', 's'],
  'append-fsync' => ['append 1 B to 1 GiB lower file (copy-up) + fsync', 's'],
  'chmod' => ['`chmod` of 64 MiB lower file', 's'],
  'churn-create' => ['churn: create files', 's'], 'churn-rename' => ['churn: rename files', 's'],
  'churn-delete' => ['churn: delete files', 's'], 'delete-lower' => ['delete 8,000 lower files', 's'],
  'compile' => ['compile (24 C files, make -j2)', 's'],
  'fio-seqread' => ['fio seq read 1 MiB, buffered (cold)', 'MiB/s'],
  'fio-seqread-direct' => ['fio seq read 1 MiB, O_DIRECT', 'MiB/s'],
  'fio-seqwrite' => ['fio seq write 1 MiB, buffered', 'MiB/s'],
  'fio-seqwrite-direct' => ['fio seq write 1 MiB, O_DIRECT', 'MiB/s'],
  'fio-randread' => ['fio random read 4 KiB, buffered (cold start)', 'IOPS'],
  'fio-randread-direct' => ['fio random read 4 KiB, O_DIRECT', 'IOPS'],
);
my @metrics;
for my $w (split ' ', $wls) {
  if ($w eq 'churn') { push @metrics, qw(churn-create churn-rename churn-delete) }
  elsif ($w eq 'fio') { push @metrics, qw(fio-seqread fio-seqread-direct fio-seqwrite fio-seqwrite-direct fio-randread fio-randread-direct) }
  else { push @metrics, $w }
}
sub cell { my ($m, $i) = @_;
  return ('n/a', undef) unless $n{$m}{$i};
  my $md = median(@{$vals{$m}{$i} || []}); my $e = $errs{$m}{$i} || 0;
  return ('error', undef) unless defined $md;
  my $s = $md >= 100 ? sprintf('%.0f', $md) : $md >= 10 ? sprintf('%.1f', $md) : sprintf('%.3f', $md);
  $s .= " ($e/$n{$m}{$i} runs failed)" if $e;
  return ($s, $md);
}
sub ratio { my ($u, $o, $higher_better) = @_;
  return '–' unless defined $u && defined $o && $u > 0 && $o > 0;
  return sprintf('%.2fx', $higher_better ? $o / $u : $u / $o); }

if ($brief) {
  for my $m (@metrics, map { "rss:$_" } split ' ', $wls) {
    next unless $n{$m};
    print "    $m: ", join('  ', map { my ($s) = cell($m, $_); "$_=$s" } @impls), "\n";
  }
  exit 0;
}
my %has = map { $_ => 1 } @impls;
print "Median of each implementation; ratios are UnionFs's time relative to the other (>1 = UnionFs slower; for MiB/s and IOPS rows computed as other/UnionFs). \"error\" = every run of that cell failed (see Errors).\n\n";
print "| workload | unit | ", join(' | ', @impls), " | unionfs/kernel | unionfs/fuse-overlayfs |\n";
print "|---|---|", join('|', map { '---:' } @impls), "|---:|---:|\n";
for my $m (@metrics) {
  next unless $n{$m};
  my ($lab, $unit) = @{$label{$m} || [$m, '']};
  my $hb = $unit ne 's';
  my (%c, %v); for my $i (@impls) { ($c{$i}, $v{$i}) = cell($m, $i) }
  print "| $lab | $unit | ", join(' | ', map { $c{$_} } @impls), " | ",
        ratio($v{unionfs}, $v{kernel}, $hb), " | ", ratio($v{unionfs}, $v{'fuse-overlayfs'}, $hb), " |\n";
}
# sanity: every implementation should show the same merged tree
if ($n{'count:find-cold'}) {
  my %c = map { my ($s) = cell('count:find-cold', $_); ($_ => $s) } @impls;
  my %u = map { $_ => 1 } values %c;
  print "\n" if 0;
  $main::countline = "Entries seen by `find` (cold): " . join(', ', map { "$_ $c{$_}" } @impls) .
    (keys(%u) > 1 ? " — **the implementations disagree on the merged tree**" : " (all agree)") . "\n";
}
# daemon memory
my @rss = grep { /^rss:/ && $n{$_} } sort keys %n;
if (@rss) {
  my @show = grep { my $w = $_; grep { $_ eq "rss:$w" } @rss } qw(stat-all tar untar delete-lower compile fio);
  for my $w (@show) {
    my (%c, %v); for my $i (@impls) { ($c{$i}, $v{$i}) = $i eq 'kernel' ? ('–', undef) : cell("rss:$w", $i) }
    print "| daemon peak RSS (VmHWM) after $w | MiB | ", join(' | ', map { $c{$_} } @impls), " | – | ",
          ratio($v{unionfs}, $v{'fuse-overlayfs'}, 0), " |\n";
  }
  my %max; for my $i (@impls) { for my $m (@rss) { for my $x (@{$vals{$m}{$i} || []}) { $max{$i} = $x if !defined $max{$i} || $x > $max{$i} } } }
  print "| daemon peak RSS, max over all runs | MiB | ", join(' | ', map { $_ eq 'kernel' ? '–' : defined $max{$_} ? sprintf('%.1f', $max{$_}) : 'n/a' } @impls),
        " | – | ", ratio($max{unionfs}, $max{'fuse-overlayfs'}, 0), " |\n";
}
print "\n$main::countline" if $main::countline;
