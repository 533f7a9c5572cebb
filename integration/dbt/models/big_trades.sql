-- A view over a view: trades worth more than 10,000.
select symbol, notional, ts
from {{ ref('priced_trades') }}
where notional > 10000
