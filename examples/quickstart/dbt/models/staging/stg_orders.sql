select
    order_id,
    customer,
    cast(amount as decimal(12, 2)) as amount,
    cast(order_date as date) as order_date
from {{ source('raw', 'orders') }}
